//! Plain coroutines over Rust futures, and `Probe` (test_coroutine.py, test_cancellation.py).

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3_async::Coroutine;

use crate::{coroutine, tokio};

/// Returns `value` at the first poll.
#[pyfunction]
#[pyo3(signature = (value, backend = None))]
fn ready(value: Py<PyAny>, backend: Option<&str>) -> PyResult<Coroutine> {
    coroutine(Coroutine::new(async move { Ok(value) }), backend)
}

/// As `ready`, made by PyO3's own `Bound::new` rather than `Coroutine`'s conversion: under
/// abi3 it starts in the base class, and its first `await` moves it (PyO3's `__await__`).
#[pyfunction]
fn ready_by_pyo3(py: Python<'_>, value: Py<PyAny>) -> PyResult<Bound<'_, Coroutine>> {
    Bound::new(py, Coroutine::new(async move { Ok(value) }))
}

/// Returns `value` after a tokio timer: the wake-up comes from a tokio worker thread.
#[pyfunction]
#[pyo3(signature = (seconds, value = None, backend = None))]
fn sleep(seconds: f64, value: Option<Py<PyAny>>, backend: Option<&str>) -> PyResult<Coroutine> {
    let timer =
        tokio().spawn(async move { tokio::time::sleep(Duration::from_secs_f64(seconds)).await });
    coroutine(
        Coroutine::new(async move {
            let _ = timer.await;
            Ok(value)
        }),
        backend,
    )
}

/// Completes when an empty tokio task has run: a wake-up from a tokio worker, no timer.
#[pyfunction]
fn tokio_noop() -> Coroutine {
    Coroutine::new(async move {
        tokio()
            .spawn(async {})
            .await
            .map_err(|err| PyValueError::new_err(err.to_string()))
    })
}

/// Returns `value` once a plain OS thread, started at the first poll, completes a channel.
#[pyfunction]
fn from_thread(value: Py<PyAny>) -> Coroutine {
    Coroutine::new(async move {
        let (tx, rx) = futures::channel::oneshot::channel();
        std::thread::spawn(move || tx.send(value));
        rx.await
            .map_err(|_| PyValueError::new_err("the thread dropped the channel"))
    })
}

/// Wakes itself `times` times while being polled, then returns the number of polls.
#[pyfunction]
fn yield_now(times: usize) -> Coroutine {
    Coroutine::new(async move {
        let mut polls = 0;
        poll_fn(|cx| {
            polls += 1;
            if polls > times {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
        Ok(polls)
    })
}

/// Pending once (woken at once), so that the outcome comes after a real suspension.
pub(crate) async fn suspend_once() {
    let mut suspended = false;
    poll_fn(|cx| {
        if suspended {
            Poll::Ready(())
        } else {
            suspended = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// Raises `exception` (an instance), at once or after one suspension.
#[pyfunction]
#[pyo3(signature = (exception, suspend = true))]
fn fail(exception: Py<PyAny>, suspend: bool) -> Coroutine {
    Coroutine::new(async move {
        if suspend {
            suspend_once().await;
        }
        Python::attach(|py| Err::<(), _>(PyErr::from_value(exception.into_bound(py))))
    })
}

/// Panics with `message`, at once or after one suspension.
#[pyfunction]
#[pyo3(signature = (message, suspend = true))]
fn panic(message: String, suspend: bool) -> Coroutine {
    Coroutine::new(async move {
        if suspend {
            suspend_once().await;
        }
        if !message.is_empty() {
            panic!("{message}");
        }
        PyResult::Ok(())
    })
}

/// A future whose destructor panics, ready with 7 or pending forever (its waker not kept).
struct PanicsOnDrop {
    ready: bool,
}

impl std::future::Future for PanicsOnDrop {
    type Output = PyResult<u32>;

    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match self.ready {
            true => Poll::Ready(Ok(7)),
            false => Poll::Pending,
        }
    }
}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("PanicsOnDrop dropped");
    }
}

/// A coroutine over a future whose destructor panics.
#[pyfunction]
fn panics_on_drop(ready: bool) -> Coroutine {
    Coroutine::new(PanicsOnDrop { ready })
}

/// Records what happened to a Rust future or stream, for the test to check.
#[pyclass(frozen)]
#[derive(Default)]
pub(crate) struct Probe {
    pub(crate) polled: AtomicUsize,
    dropped: AtomicBool,
    cleaned_up: AtomicBool,
}

#[pymethods]
impl Probe {
    #[new]
    fn new() -> Self {
        Probe::default()
    }

    #[getter]
    fn polled(&self) -> usize {
        self.polled.load(Ordering::SeqCst)
    }

    #[getter]
    fn dropped(&self) -> bool {
        self.dropped.load(Ordering::SeqCst)
    }

    #[getter]
    fn cleaned_up(&self) -> bool {
        self.cleaned_up.load(Ordering::SeqCst)
    }
}

/// Marks its probe dropped when dropped.
pub(crate) struct DropGuard(pub(crate) Arc<Py<Probe>>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.get().dropped.store(true, Ordering::SeqCst);
    }
}

/// Never completes; the probe tells whether it was polled and dropped.
#[pyfunction]
#[pyo3(signature = (probe, backend = None))]
fn pending_forever(probe: Py<Probe>, backend: Option<&str>) -> PyResult<Coroutine> {
    let guard = DropGuard(Arc::new(probe));
    let forever = Coroutine::new(async move {
        let _guard = &guard;
        poll_fn(|_| {
            guard.0.get().polled.fetch_add(1, Ordering::SeqCst);
            Poll::<()>::Pending
        })
        .await;
        PyResult::Ok(())
    });
    coroutine(forever, backend)
}

/// Waits for the cancellation, cleans up asynchronously (a round trip through a tokio worker),
/// marks the probe and returns the cancellation exception.
#[pyfunction]
#[pyo3(signature = (probe, result = None))]
fn cleanup_on_cancel(probe: Py<Probe>, result: Option<Py<PyAny>>) -> Coroutine {
    let guard = DropGuard(Arc::new(probe));
    Coroutine::with_cancel_handle(move |cancel| async move {
        let exception = cancel.cancelled().await;
        let _ = tokio().spawn(tokio::task::yield_now()).await;
        suspend_once().await;
        guard.0.get().cleaned_up.store(true, Ordering::SeqCst);
        match result {
            Some(result) => Ok(result),
            None => Err(exception),
        }
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ready, m)?)?;
    m.add_function(wrap_pyfunction!(ready_by_pyo3, m)?)?;
    m.add_function(wrap_pyfunction!(panics_on_drop, m)?)?;
    m.add_function(wrap_pyfunction!(sleep, m)?)?;
    m.add_function(wrap_pyfunction!(from_thread, m)?)?;
    m.add_function(wrap_pyfunction!(tokio_noop, m)?)?;
    m.add_function(wrap_pyfunction!(yield_now, m)?)?;
    m.add_function(wrap_pyfunction!(fail, m)?)?;
    m.add_function(wrap_pyfunction!(panic, m)?)?;
    m.add_function(wrap_pyfunction!(pending_forever, m)?)?;
    m.add_function(wrap_pyfunction!(cleanup_on_cancel, m)?)?;
    m.add_class::<Probe>()?;
    Ok(())
}

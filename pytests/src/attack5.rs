//! Round-5 attack helpers (test_attack_round5.py): boxed labels built by hand, and a waker
//! kept by a foreign thread that wakes it in a loop and drops it there, without the GIL.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::thread::JoinHandle;

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3_async::__private::StaticLabel;
use pyo3_async::{AsyncGenerator, Coroutine};

use crate::coroutines::suspend_once;

static LABEL: StaticLabel = StaticLabel {
    qualname: "Static.label",
    file: "pytests/src/attack5.rs",
    line: 17,
};

/// A coroutine labelled by `steps`, in order: ("static", _) the macros' static label,
/// ("qualname", name) `with_qualname`, ("source", line) `with_source` (this file). It suspends
/// once, then raises `KeyError(payload)` when `fail`, else returns `payload`.
#[pyfunction]
#[pyo3(signature = (steps, payload, fail = false))]
fn relabelled(steps: Vec<(String, String)>, payload: Py<PyAny>, fail: bool) -> PyResult<Coroutine> {
    let mut coroutine = Coroutine::new(async move {
        suspend_once().await;
        if fail {
            Err(PyKeyError::new_err(payload))
        } else {
            Ok(payload)
        }
    });
    for (kind, value) in steps {
        coroutine = match kind.as_str() {
            "static" => coroutine.__with_label(&LABEL),
            "qualname" => coroutine.with_qualname(value),
            "source" => coroutine.with_source(
                "pytests/src/attack5.rs",
                value.parse().map_err(|_| PyKeyError::new_err("line"))?,
            ),
            _ => return Err(PyKeyError::new_err(kind)),
        };
    }
    Ok(coroutine)
}

/// An async generator of `0..n` renamed by hand.
#[pyfunction]
fn relabelled_generator(n: usize, qualname: String) -> AsyncGenerator {
    AsyncGenerator::new(futures::stream::iter((0..n).map(PyResult::Ok))).with_qualname(qualname)
}

/// Keeps the waker of the coroutine it makes in a foreign thread.
#[pyclass(frozen)]
#[derive(Default)]
struct ForeignWaker {
    waker: Arc<Mutex<Option<Waker>>>,
    stop: Arc<AtomicBool>,
    wakes: Arc<AtomicUsize>,
    thread: Mutex<Option<JoinHandle<usize>>>,
}

#[pymethods]
impl ForeignWaker {
    #[new]
    fn new() -> Self {
        ForeignWaker::default()
    }

    /// Pending for ever, its waker (re)stored at each poll; `payload` lives in the future.
    fn wait(&self, payload: Py<PyAny>) -> Coroutine {
        let waker = Arc::clone(&self.waker);
        Coroutine::new(async move {
            let _payload = payload;
            poll_fn(|cx| {
                *waker.lock().expect("lock") = Some(cx.waker().clone());
                Poll::<()>::Pending
            })
            .await;
            PyResult::Ok(())
        })
    }

    /// Starts a thread that takes the waker and wakes it in a loop until `stop`, then drops it
    /// there (without the GIL). Returns once the thread holds the waker.
    fn start(&self, py: Python<'_>) {
        let waker = self.waker.lock().expect("lock").take();
        let Some(waker) = waker else { return };
        let stop = Arc::clone(&self.stop);
        let wakes = Arc::clone(&self.wakes);
        let thread = std::thread::spawn(move || {
            let mut count = 0;
            while !stop.load(Ordering::SeqCst) {
                waker.wake_by_ref();
                count += 1;
                wakes.fetch_add(1, Ordering::SeqCst);
            }
            // The waker itself, woken by value: dropped here, without the interpreter.
            waker.wake();
            count
        });
        *self.thread.lock().expect("lock") = Some(thread);
        // The loop has begun (a few wakes) before control returns.
        py.detach(|| {
            while self.wakes.load(Ordering::SeqCst) < 10 {
                std::thread::yield_now();
            }
        });
    }

    /// Stops the thread (which drops the waker) and returns how many wakes it made.
    fn stop(&self, py: Python<'_>) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.lock().expect("lock").take();
        py.detach(|| thread.map_or(0, |thread| thread.join().expect("waker thread")))
    }

    /// Takes the kept waker and drops it on a new thread (without the GIL); whether there was one.
    fn drop_on_thread(&self, py: Python<'_>) -> bool {
        let waker = self.waker.lock().expect("lock").take();
        let had = waker.is_some();
        py.detach(|| {
            std::thread::spawn(move || drop(waker))
                .join()
                .expect("drop thread")
        });
        had
    }

    #[getter]
    fn has_waker(&self) -> bool {
        self.waker.lock().expect("lock").is_some()
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(relabelled, m)?)?;
    m.add_function(wrap_pyfunction!(relabelled_generator, m)?)?;
    m.add_class::<ForeignWaker>()?;
    Ok(())
}

//! Wake sources fired from Python: Trigger, WakerStash, Latch (test_coroutine.py, test_gil.py).

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use event_listener::Event;
use pyo3::prelude::*;
use pyo3_async::{AllowThreads, Coroutine};

use crate::coroutine;
use crate::coroutines::{DropGuard, Probe};

/// A one-shot event fired from Python, on the loop thread or from another thread.
#[pyclass(frozen)]
#[derive(Default)]
pub(crate) struct Trigger {
    fired: AtomicBool,
    event: Event,
}

impl Trigger {
    pub(crate) fn fire_now(&self) {
        self.fired.store(true, Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }

    pub(crate) async fn fired(&self) {
        while !self.fired.load(Ordering::SeqCst) {
            let listener = self.event.listen();
            if self.fired.load(Ordering::SeqCst) {
                break;
            }
            listener.await;
        }
    }
}

#[pymethods]
impl Trigger {
    #[new]
    fn new() -> Self {
        Trigger::default()
    }

    /// Fires in the calling thread: wakers run right here.
    fn fire(&self) {
        self.fire_now();
    }

    /// Fires from a new OS thread and waits for it, with the interpreter released.
    fn fire_from_thread(slf: Py<Self>, py: Python<'_>) {
        py.detach(|| {
            std::thread::spawn(move || slf.get().fire_now())
                .join()
                .expect("the firing thread")
        });
    }

    /// Completes with `value` once fired.
    #[pyo3(signature = (value = None, backend = None))]
    fn wait(slf: Py<Self>, value: Option<Py<PyAny>>, backend: Option<&str>) -> PyResult<Coroutine> {
        coroutine(
            Coroutine::new(async move {
                slf.get().fired().await;
                Ok(value)
            }),
            backend,
        )
    }
}

/// Keeps the waker of a pending future, to wake it later from anywhere.
#[pyclass(frozen)]
#[derive(Default)]
struct WakerStash {
    waker: Mutex<Option<Waker>>,
    wakes: AtomicUsize,
}

#[pymethods]
impl WakerStash {
    #[new]
    fn new() -> Self {
        WakerStash::default()
    }

    /// Pending until woken through the stash `times` times; `probe`, if given, sees the
    /// future dropped (the stash keeps the waker after that).
    #[pyo3(signature = (times, probe = None))]
    fn wait(slf: Py<Self>, times: usize, probe: Option<Py<Probe>>) -> Coroutine {
        let guard = probe.map(|probe| DropGuard(Arc::new(probe)));
        Coroutine::new(async move {
            let _guard = guard;
            poll_fn(|cx| {
                let stash = slf.get();
                *stash.waker.lock().expect("stash lock") = Some(cx.waker().clone());
                if stash.wakes.load(Ordering::SeqCst) >= times {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            PyResult::Ok(())
        })
    }

    #[getter]
    fn has_waker(&self) -> bool {
        self.waker.lock().expect("stash lock").is_some()
    }

    /// Wakes the stashed waker `times` times from `threads` OS threads at once, and waits for
    /// them with the interpreter released.
    #[pyo3(signature = (times = 1, threads = 1))]
    fn wake_from_threads(slf: Py<Self>, py: Python<'_>, times: usize, threads: usize) {
        let waker = slf.get().waker.lock().expect("stash lock").clone();
        let Some(waker) = waker else { return };
        py.detach(|| {
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| {
                        for _ in 0..times {
                            slf.get().wakes.fetch_add(1, Ordering::SeqCst);
                            waker.wake_by_ref();
                        }
                    });
                }
            })
        });
    }

    /// Wakes the stashed waker in the calling thread.
    fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        if let Some(waker) = self.waker.lock().expect("stash lock").clone() {
            waker.wake();
        }
    }
}

/// A latch between a blocking Rust poll and a Python thread: the poll announces that it has
/// started blocking, then waits (at most a timeout) for the thread to set the latch.
#[pyclass(frozen)]
#[derive(Default)]
pub(crate) struct Latch {
    /// (the poll is blocking, the latch is set)
    state: Mutex<(bool, bool)>,
    changed: std::sync::Condvar,
}

#[pymethods]
impl Latch {
    #[new]
    fn new() -> Self {
        Latch::default()
    }

    /// Waits, with the interpreter released, until a poll blocks on the latch. Returning to
    /// Python needs the interpreter: that happens during the poll only if the poll released it.
    fn wait_blocked(&self, py: Python<'_>) {
        py.detach(|| {
            let state = self.state.lock().expect("latch lock");
            drop(
                self.changed
                    .wait_while(state, |(blocking, _)| !*blocking)
                    .expect("latch lock"),
            );
        });
    }

    fn set(&self) {
        self.state.lock().expect("latch lock").1 = true;
        self.changed.notify_all();
    }
}

impl Latch {
    /// Announces that it blocks, then blocks until set (at most `timeout` seconds); whether
    /// it was set.
    pub(crate) fn block(&self, timeout: f64) -> bool {
        let mut state = self.state.lock().expect("latch lock");
        state.0 = true;
        self.changed.notify_all();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, Duration::from_secs_f64(timeout), |(_, set)| !*set)
            .expect("latch lock");
        state.1
    }
}

/// A poll that blocks its thread until the latch is set (at most `timeout` seconds) and
/// returns whether it was: only a poll with the interpreter released lets a Python thread in.
#[pyfunction]
#[pyo3(signature = (latch, timeout, allow_threads))]
fn block_on_latch(latch: Py<Latch>, timeout: f64, allow_threads: bool) -> Coroutine {
    let wait = async move { PyResult::Ok(latch.get().block(timeout)) };
    if allow_threads {
        Coroutine::new(AllowThreads::new(wait))
    } else {
        Coroutine::new(wait)
    }
}

/// A Ctrl-C that arrives just as a wake-up is delivered: when first polled, makes an
/// interrupt pending (as a SIGINT does; no Python code runs in between), then fires `trigger`
/// from the loop's own thread, which delivers its wake-up at once.
#[pyfunction]
fn interrupt_and_fire(trigger: Py<Trigger>) -> Coroutine {
    Coroutine::new(async move {
        // SAFETY: no preconditions; it only sets the pending-signal flag.
        unsafe { pyo3::ffi::PyErr_SetInterrupt() };
        trigger.get().fire_now();
        PyResult::Ok(())
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(interrupt_and_fire, m)?)?;
    m.add_function(wrap_pyfunction!(block_on_latch, m)?)?;
    m.add_class::<Trigger>()?;
    m.add_class::<WakerStash>()?;
    m.add_class::<Latch>()?;
    Ok(())
}

//! asyncio (and uvloop): a task suspends on a future of its loop and resumes when the future
//! gets a result.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::{intern, wrap_pyfunction};

use crate::backend::{self, Backend, Home};
use crate::waiter::Waiter;

pub(crate) struct Parker {
    /// The task's loop.
    home: Arc<Home>,
    /// The future the task waits for, while it is suspended on one.
    waiting_on: Option<Py<PyAny>>,
}

impl Parker {
    pub(crate) fn new(py: Python<'_>) -> PyResult<Self> {
        Ok(Parker {
            home: Home::here(py, Backend::Asyncio, &get_running_loop(py)?),
            waiting_on: None,
        })
    }

    pub(crate) fn home(&self) -> &Home {
        &self.home
    }

    /// A task resumes us only once the future it waits for is done; anything else is a second
    /// driver (the coroutine given to two tasks), which would otherwise leave the first task
    /// waiting forever.
    pub(crate) fn check_resumption(&mut self, py: Python<'_>) -> PyResult<()> {
        match self.waiting_on.take() {
            Some(future)
                if !future
                    .bind(py)
                    .call_method0(intern!(py, "done"))?
                    .is_truthy()? =>
            {
                self.waiting_on = Some(future);
                Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "coroutine resumed while it waits for its wake-up: is it driven by two tasks?",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Forgets the suspension (an exception was thrown in instead of a wake-up).
    pub(crate) fn abandon(&mut self) {
        self.waiting_on = None;
    }

    pub(crate) fn event_loop(&self, py: Python<'_>) -> crate::EventLoop {
        crate::EventLoop::asyncio(self.home.event_loop.bind(py))
    }

    /// Yields a fresh future of the loop. The Task checks the `_asyncio_future_blocking` flag,
    /// adds its wake-up as a done-callback and resumes us once the future has a result. A real
    /// `asyncio.Future` is required: anyio inspects `task._fut_waiter` to deliver cancellation.
    pub(crate) fn park<'py>(
        &mut self,
        py: Python<'py>,
        waiter: &Waiter,
    ) -> PyResult<Bound<'py, PyAny>> {
        // Woken while it was polled: a bare `yield` makes the Task resume us on the loop's next
        // pass, as `asyncio.sleep(0)` does. (A done future would too, but anyio holds back
        // cancelling a task whose waiter is done, so a future that keeps waking itself could
        // never be cancelled.)
        if waiter.woken_during_poll() {
            return Ok(py.None().into_bound(py));
        }
        let future = self
            .home
            .event_loop
            .bind(py)
            .call_method0(intern!(py, "create_future"))?;
        future.setattr(intern!(py, "_asyncio_future_blocking"), true)?;
        let wakeup = Wakeup {
            home: Arc::clone(&self.home),
            future: future.clone().unbind(),
        };
        match waiter.park(backend::Wakeup::Asyncio(wakeup)) {
            Ok(()) => {
                self.waiting_on = Some(future.clone().unbind());
                Ok(future)
            }
            // Woken just now: as above.
            Err(_) => Ok(py.None().into_bound(py)),
        }
    }
}

pub(crate) struct Wakeup {
    home: Arc<Home>,
    future: Py<PyAny>,
}

impl Wakeup {
    pub(crate) fn home(&self) -> &Home {
        &self.home
    }

    pub(crate) fn deliver_on_loop_thread(self, py: Python<'_>) {
        // The future may have been cancelled meanwhile, or the loop closed: nobody waits for
        // this wake-up any more.
        let _ = set_result_unless_done(self.future.bind(py));
    }

    /// The fallback for loops that cannot watch a socket.
    pub(crate) fn deliver_threadsafe(self) {
        crate::exit_guard::attach_unless_exiting(move |py| {
            let _ = wake_future_fn(py).and_then(|wake| {
                self.home
                    .event_loop
                    .bind(py)
                    .call_method1(intern!(py, "call_soon_threadsafe"), (wake, &self.future))
            });
        });
    }
}

/// The asyncio loop running in this thread; `RuntimeError` outside one.
pub(crate) fn get_running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    GET_RUNNING_LOOP
        .import(py, "asyncio", "get_running_loop")?
        .call0()
}

/// The asyncio loop running in this thread, or `None`.
pub(crate) fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    RUNNING_LOOP
        .import(py, "asyncio", "_get_running_loop")?
        .call0()
}

/// Resolves `future` with `None` unless it is already done (cancelled by its task).
fn set_result_unless_done(future: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = future.py();
    if !future.call_method0(intern!(py, "done"))?.is_truthy()? {
        future.call_method1(intern!(py, "set_result"), (py.None(),))?;
    }
    Ok(())
}

/// Runs on the loop thread, scheduled by a wake-up from another thread.
#[pyfunction]
fn wake_future(future: &Bound<'_, PyAny>) -> PyResult<()> {
    set_result_unless_done(future)
}

fn wake_future_fn(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static WAKE_FUTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    WAKE_FUTURE
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(wrap_pyfunction!(wake_future, py)?.into_any().unbind())
        })
        .map(|wake| wake.bind(py))
}

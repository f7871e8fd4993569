//! trio: a task suspends through `trio.lowlevel.wait_task_rescheduled` and resumes when
//! `reschedule` is called for it, exactly once per suspension.

use std::sync::Arc;

use pyo3::exceptions::PyStopIteration;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::backend::{self, Backend, Home};
use crate::waiter::Waiter;

/// Looks up `trio.lowlevel.<name>` once per process.
macro_rules! lowlevel {
    ($py:expr, $name:literal) => {{
        static ATTR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        ATTR.import($py, "trio.lowlevel", $name)
    }};
}

/// The trio task driving an awaitable, and how to reach it from another thread.
struct Task {
    task: Py<PyAny>,
    /// The run's token is the home's loop.
    home: Arc<Home>,
}

pub(crate) struct Parker {
    task: Arc<Task>,
    abort_fn: Py<AbortFn>,
    suspension: Option<Suspension>,
}

/// What the task yielded to trio, to make sense of trio's answer.
enum Suspension {
    /// trio's own `WaitTaskRescheduled` trap: the answer is an `outcome` to unwrap.
    Trap,
    /// A trio coroutine (`wait_task_rescheduled`, `checkpoint`) whose trap we passed on: the
    /// answer is sent on to it, so trio's own code interprets it.
    Coroutine(Py<PyAny>),
}

impl Parker {
    pub(crate) fn new(py: Python<'_>, waiter: &Arc<Waiter>) -> PyResult<Self> {
        let task = lowlevel!(py, "current_task")?.call0()?;
        let token = current_token(py)?;
        Ok(Parker {
            task: Arc::new(Task {
                home: Home::here(py, Backend::Trio, &token),
                task: task.unbind(),
            }),
            abort_fn: Py::new(
                py,
                AbortFn {
                    waiter: Arc::clone(waiter),
                },
            )?,
            suspension: None,
        })
    }

    pub(crate) fn home(&self) -> &Home {
        &self.task.home
    }

    pub(crate) fn event_loop(&self, py: Python<'_>) -> crate::EventLoop {
        crate::EventLoop::trio(self.task.home.event_loop.bind(py))
    }

    pub(crate) fn park<'py>(
        &mut self,
        py: Python<'py>,
        waiter: &Waiter,
    ) -> PyResult<Bound<'py, PyAny>> {
        // The trap is obtained before the wake-up is registered, so no Python code (and thus no
        // finaliser that could wake us) runs between registering and yielding: trio must not
        // see a `reschedule` for a task that has not suspended yet.
        let (trap, suspension) = match wait_task_rescheduled_trap(py) {
            Some(trap) => (trap.call1((&self.abort_fn,))?, Suspension::Trap),
            None => {
                let wait = lowlevel!(py, "wait_task_rescheduled")?.call1((&self.abort_fn,))?;
                let trap = wait.call_method1(intern!(py, "send"), (py.None(),))?;
                (trap, Suspension::Coroutine(wait.unbind()))
            }
        };
        let wakeup = Wakeup {
            task: Arc::clone(&self.task),
        };
        if waiter.park(backend::Wakeup::Trio(wakeup)).is_ok() {
            self.suspension = Some(suspension);
            return Ok(trap);
        }
        if let Suspension::Coroutine(wait) = suspension {
            wait.bind(py).call_method0(intern!(py, "close"))?;
        }
        // Woken while it was polled: pass through a checkpoint, which trio resumes on its next
        // pass instead of waiting for a reschedule — and which delivers a pending cancellation,
        // so a future that keeps waking itself can still be cancelled.
        let checkpoint = lowlevel!(py, "checkpoint")?.call0()?;
        let trap = checkpoint.call_method1(intern!(py, "send"), (py.None(),))?;
        self.suspension = Some(Suspension::Coroutine(checkpoint.unbind()));
        Ok(trap)
    }

    /// trio resumes a task by sending an `outcome.Value` or `outcome.Error`; the suspended trio
    /// coroutine unwraps it, raising `Cancelled` when the abort succeeded. A checkpoint may
    /// suspend a second time: that trap goes back to trio.
    pub(crate) fn resume<'py>(
        &mut self,
        py: Python<'py>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let suspension = match self.suspension.take() {
            None => return Ok(None),
            Some(Suspension::Trap) => {
                value.call_method0(intern!(py, "unwrap"))?;
                return Ok(None);
            }
            Some(Suspension::Coroutine(suspension)) => suspension,
        };
        match suspension
            .bind(py)
            .call_method1(intern!(py, "send"), (value,))
        {
            Ok(trap) => {
                self.suspension = Some(Suspension::Coroutine(suspension));
                Ok(Some(trap))
            }
            Err(err) if err.is_instance_of::<PyStopIteration>(py) => Ok(None),
            Err(err) => Err(err),
        }
    }

    pub(crate) fn abandon(&mut self, py: Python<'_>) {
        if let Some(Suspension::Coroutine(suspension)) = self.suspension.take() {
            let _ = suspension.bind(py).call_method0(intern!(py, "close"));
        }
    }
}

/// trio's trap class for `wait_task_rescheduled`, when this trio version keeps it where
/// trio 0.35 does. Yielding the trap ourselves is what `wait_task_rescheduled` does, minus a
/// Python coroutine (its frame and a `send`) per suspension; with another layout we use the
/// public function.
fn wait_task_rescheduled_trap(py: Python<'_>) -> Option<&Bound<'_, PyAny>> {
    static TRAP: PyOnceLock<Option<Py<PyAny>>> = PyOnceLock::new();
    TRAP.get_or_init(py, || {
        py.import("trio._core._traps")
            .and_then(|traps| traps.getattr("WaitTaskRescheduled"))
            .ok()
            .map(Bound::unbind)
    })
    .as_ref()
    .map(|trap| trap.bind(py))
}

/// The token of the trio run on this thread; `RuntimeError` outside one.
pub(crate) fn current_token(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    lowlevel!(py, "current_trio_token")?.call0()
}

pub(crate) struct Wakeup {
    task: Arc<Task>,
}

impl Wakeup {
    pub(crate) fn home(&self) -> &Home {
        &self.task.home
    }

    pub(crate) fn deliver_on_loop_thread(self, py: Python<'_>) {
        let Ok(reschedule) = lowlevel!(py, "reschedule") else {
            return;
        };
        // It refuses outside the run's own steps (guest mode): the token's queue is the way
        // in then.
        if reschedule.call1((self.task.task.bind(py),)).is_err() {
            self.run_sync_soon(py, reschedule);
        }
    }

    /// The fallback when the run has no wake queue.
    pub(crate) fn deliver_threadsafe(self) {
        crate::exit_guard::attach_unless_exiting(move |py| {
            if let Ok(reschedule) = lowlevel!(py, "reschedule") {
                self.run_sync_soon(py, reschedule);
            }
        });
    }

    fn run_sync_soon(&self, py: Python<'_>, reschedule: &Bound<'_, PyAny>) {
        // `RunFinishedError`: the run is over, nobody is left to wake.
        let _ = self.task.home.event_loop.bind(py).call_method1(
            intern!(py, "run_sync_soon"),
            (reschedule, self.task.task.bind(py)),
        );
    }
}

/// The `abort_fn` trio calls on the trio thread when a cancellation reaches the parked task.
#[pyclass(frozen)]
struct AbortFn {
    waiter: Arc<Waiter>,
}

#[pymethods]
impl AbortFn {
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        _raise_cancel: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // `SUCCEEDED` is only allowed when no reschedule can follow; once a wake-up is on its
        // way (or the future handles cancellation itself) the task waits for that wake-up, and
        // trio calls us again at its next suspension.
        let verdict = if self.waiter.abort() {
            "SUCCEEDED"
        } else {
            "FAILED"
        };
        lowlevel!(py, "Abort")?.getattr(verdict)
    }
}

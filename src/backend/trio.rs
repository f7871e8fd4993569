//! trio: a task suspends through `trio.lowlevel.wait_task_rescheduled` and resumes when
//! `reschedule` is called for it, exactly once per suspension.

use std::sync::{Arc, Weak};

use pyo3::exceptions::{PyRuntimeError, PyStopIteration};
use pyo3::intern;
use pyo3::prelude::*;

use crate::backend::abort::Abort;
use crate::glue;
use crate::home::{self, Home};
use crate::task::{Canceller, Launch};
use crate::visit::Visit;

/// The home of a trio run (by its token); a new one watches its signal from a system task.
pub(crate) fn home(token: &Bound<'_, PyAny>) -> PyResult<Arc<Home>> {
    let py = token.py();
    let (home, created) = home::find_or_create(token, |_| {
        Ok(home::Parts {
            threadsafe: token.getattr(intern!(py, "run_sync_soon"))?,
            record: None,
            // A run's home dies only with the run.
            succession: None,
        })
    })?;
    if created {
        // A finished run refuses (`RunFinishedError`) and drops the watcher: the home dies.
        let drain = home.drain_callable(py, home::drain::DrainRole::Watcher)?;
        let watch = glue::watch_trio(py)?;
        let fd = home.watched_fd();
        let _ = if running_here(py, &home) {
            watch.call1((fd, drain))
        } else {
            token.call_method1(intern!(py, "run_sync_soon"), (watch, fd, drain))
        };
    }
    Ok(home)
}

/// Whether this thread runs `home`'s trio run right now (inside one of its steps).
pub(crate) fn running_here(py: Python<'_>, home: &Home) -> bool {
    glue::trio_current_token(py)
        .and_then(|current| current.call0())
        .is_ok_and(|token| token.is(home.event_loop()))
}

/// Starts the launch's awaitable as a system task of its run, in a cancel scope of its own,
/// which the slot gets as its canceller (see [`Launch`]).
pub(crate) fn start(launch: &Launch<'_>) -> PyResult<()> {
    let py = launch.awaitable.py();
    let scope = glue::trio_cancel_scope(py)?.call0()?;
    let cancel = scope.getattr(intern!(py, "cancel"))?.unbind();
    launch.slot.attach(Canceller::OnLoop(
        Arc::clone(&launch.home),
        Box::new(move |py| cancel.bind(py).call0().map(drop)),
    ));
    let args = (
        &launch.awaitable,
        &launch.context,
        &launch.completion,
        scope,
    );
    glue::start_trio_task(py)?.call1(args).map(drop)
}

pub(crate) struct Parker {
    task: Py<TrioTask>,
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
    pub(crate) fn new(py: Python<'_>, waiter: Weak<dyn Abort>) -> PyResult<Self> {
        let task = glue::trio_current_task(py)?.call0()?;
        let token = glue::trio_current_token(py)?.call0()?;
        let task = TrioTask {
            home: home(&token)?,
            task: task.unbind(),
            waiter,
        };
        Ok(Parker {
            task: Py::new(py, task)?,
            suspension: None,
        })
    }

    pub(crate) fn home(&self) -> &Arc<Home> {
        &self.task.get().home
    }

    /// Suspends through trio's trap; `register` hands the wake-up to the waker state, false
    /// when woken meanwhile (`woken`: during the poll).
    pub(crate) fn park<'py>(
        &mut self,
        py: Python<'py>,
        woken: bool,
        register: impl FnOnce(Wakeup) -> bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        if woken {
            return self.checkpoint(py);
        }
        // The trap is obtained before the wake-up is registered, so no Python code (and thus no
        // finaliser that could wake us) runs between registering and yielding: trio must not
        // see a `reschedule` for a task that has not suspended yet.
        let (trap, suspension) = match glue::trio_wait_task_rescheduled_trap(py) {
            Some(trap) => (trap.call1((&self.task,))?, Suspension::Trap),
            None => {
                let wait = glue::trio_wait_task_rescheduled(py)?.call1((&self.task,))?;
                let trap = wait.call_method1(intern!(py, "send"), (py.None(),))?;
                (trap, Suspension::Coroutine(wait.unbind()))
            }
        };
        let wakeup = Wakeup {
            task: self.task.clone_ref(py),
        };
        if register(wakeup) {
            self.suspension = Some(suspension);
            return Ok(trap);
        }
        if let Suspension::Coroutine(wait) = suspension {
            wait.bind(py).call_method0(intern!(py, "close"))?;
        }
        self.checkpoint(py)
    }

    /// Woken while it was polled: pass through a checkpoint, which trio resumes on its next
    /// pass instead of waiting for a reschedule — and which delivers a pending cancellation, so
    /// a future that keeps waking itself can still be cancelled.
    fn checkpoint<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let checkpoint = glue::trio_checkpoint(py)?.call0()?;
        let trap = checkpoint.call_method1(intern!(py, "send"), (py.None(),))?;
        self.suspension = Some(Suspension::Coroutine(checkpoint.unbind()));
        Ok(trap)
    }

    /// Refuses a resumption that is not trio's answer to the trap (the coroutine resumed by
    /// hand with `send(None)`): trio always sends an outcome. The suspension stays as it was,
    /// and the error reaches the caller, not the future (it is no cancellation).
    pub(crate) fn check_resumption(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        match self.suspension {
            Some(Suspension::Trap) if value.is_none() => Err(PyRuntimeError::new_err(
                "a coroutine suspended in trio's trap was resumed by hand (send(None)): only \
                 trio resumes it, with an outcome",
            )),
            _ => Ok(()),
        }
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

    /// The trio coroutine the task is suspended in, if the suspension went through one.
    pub(crate) fn awaiting(&self) -> Option<&Py<PyAny>> {
        match &self.suspension {
            Some(Suspension::Coroutine(suspension)) => Some(suspension),
            _ => None,
        }
    }

    pub(crate) fn traverse<V: Visit>(&self, visit: &V) -> Result<(), V::Error> {
        match &self.suspension {
            Some(Suspension::Coroutine(suspension)) => visit.visit(suspension),
            _ => Ok(()),
        }
    }

    pub(crate) fn abandon(&mut self, py: Python<'_>) {
        if let Some(Suspension::Coroutine(suspension)) = self.suspension.take() {
            let _ = suspension.bind(py).call_method0(intern!(py, "close"));
        }
    }
}

pub(crate) struct Wakeup {
    task: Py<TrioTask>,
}

impl Wakeup {
    pub(crate) fn home(&self) -> &Arc<Home> {
        &self.task.get().home
    }

    /// Reschedules the task if it waits in this suspension's trap, or looks again once the
    /// running task's step is over, from the home's queue (see [`TrioTask::whereabouts`]).
    /// `reschedule` refuses outside the run's own steps: the token's queue is the way in then;
    /// `RunFinishedError` means nobody is left to wake.
    pub(crate) fn deliver_here(self, py: Python<'_>) -> PyResult<()> {
        let task = self.task.bind(py);
        match TrioTask::whereabouts(task) {
            Whereabouts::Here => {
                // Refused outside the run's steps: from the forwarder thread, for one.
                if TrioTask::reschedule_now(task).is_err() {
                    let token = task.get().home.event_loop().bind(py);
                    let later = task.getattr(intern!(py, "reschedule"))?;
                    let _ = token.call_method1(intern!(py, "run_sync_soon"), (later,));
                }
            }
            Whereabouts::Running => {
                // Through the home's queue, not trio's: a waker may run under its owner's lock,
                // and `run_sync_soon` writes to trio's socket with the interpreter released, so
                // a thread waiting for that lock while attached would deadlock us.
                let home = Arc::clone(self.home());
                home.run(Box::new(move |py| self.deliver_here(py)));
            }
            Whereabouts::Elsewhere => {}
        }
        Ok(())
    }
}

/// Where a wake-up finds its trio task.
enum Whereabouts {
    /// Waiting in the suspension's trap: reschedule it.
    Here,
    /// Running this very step: a trap it got by sending the coroutine by hand (an eager start,
    /// a proxy's `__await__`) may be on its way to trio, which records it after the step.
    Running,
    /// Waiting for something else, or gone: the trap never reached trio.
    Elsewhere,
}

/// The trio task driving an awaitable, and the `abort_fn` trio calls on the trio thread when a
/// cancellation reaches it while parked: one object, which the parker and each wake-up share
/// (64 bytes; an `Arc` for the task and a Python object for the function took 96).
#[pyclass(frozen)]
pub(crate) struct TrioTask {
    task: Py<PyAny>,
    /// The run's token is the home's loop.
    home: Arc<Home>,
    /// The awaitable's waker state, weakly: trio holds this object (as the task's abort
    /// function) while the awaitable's driver holds it too, and a strong reference back would
    /// make a cycle through Rust.
    waiter: Weak<dyn Abort>,
}

impl TrioTask {
    /// Where the task is, for a wake-up of this suspension. trio keeps a suspended task's
    /// abort function in `_abort_func` from the trap until its reschedule, or until it asks it
    /// to abort once: a refused abort leaves `None` there while the task still waits here, so
    /// the refusal marks the task's `custom_sleep_data` (trio's slot for the code that put the
    /// task to sleep, cleared by its reschedule) with this object.
    ///
    /// A wake-up is delivered once per suspension, but the trap may not have reached trio: a
    /// coroutine sent by hand inside a trio task parks for the task that sent it, and
    /// rescheduling a task that waits for something else corrupts the run
    /// (`TrioInternalError`). A trio without `_abort_func` is trusted.
    fn whereabouts(slf: &Bound<'_, Self>) -> Whereabouts {
        let py = slf.py();
        let task = slf.get().task.bind(py);
        let Ok(abort) = task.getattr(intern!(py, "_abort_func")) else {
            return Whereabouts::Here;
        };
        if abort.is(slf) {
            return Whereabouts::Here;
        }
        if !abort.is_none() {
            return Whereabouts::Elsewhere;
        }
        if task
            .getattr(intern!(py, "custom_sleep_data"))
            .is_ok_and(|data| data.is(slf))
        {
            return Whereabouts::Here;
        }
        let running = glue::trio_current_task(py)
            .and_then(|current| current.call0())
            .is_ok_and(|current| current.is(task));
        if running {
            Whereabouts::Running
        } else {
            Whereabouts::Elsewhere
        }
    }

    fn reschedule_now(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        glue::trio_reschedule(py)?
            .call1((slf.get().task.bind(py),))
            .map(drop)
    }
}

#[pymethods]
impl TrioTask {
    /// A wake-up delivered through the run's token queue, where `reschedule` refused outside
    /// the run's steps: it looks where the task is again, at that time.
    fn reschedule(slf: &Bound<'_, Self>) -> PyResult<()> {
        match Self::whereabouts(slf) {
            Whereabouts::Here => Self::reschedule_now(slf),
            Whereabouts::Running | Whereabouts::Elsewhere => Ok(()),
        }
    }

    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        _raise_cancel: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        // `SUCCEEDED` is only allowed when no reschedule can follow; once a wake-up is on its
        // way (or the future handles cancellation itself) the task waits for that wake-up, and
        // trio calls us again at its next suspension.
        // An awaitable that is gone can wake nobody: the abort is the task's only way out.
        // trio clears `_abort_func` only after this call: the task it asks about is the
        // parker's unless a trap sent by hand in one task was yielded by another. No wake-up
        // can reach that other task (they go to the parker's, which waits elsewhere): the
        // abort is its only way out.
        let task = this.task.bind(py);
        let parkers = task
            .getattr(intern!(py, "_abort_func"))
            .map_or(true, |abort| abort.is(slf));
        let aborted = this.waiter.upgrade().is_none_or(|waiter| waiter.abort(py)) || !parkers;
        if !aborted {
            // The task keeps waiting here, with no abort function (see `whereabouts`).
            let _ = task.setattr(intern!(py, "custom_sleep_data"), slf);
        }
        let verdict = if aborted {
            intern!(py, "SUCCEEDED")
        } else {
            intern!(py, "FAILED")
        };
        glue::trio_abort(py)?.getattr(verdict)
    }
}

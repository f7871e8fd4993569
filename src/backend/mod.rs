//! Event-loop backends: everything asyncio- or trio-specific, behind one two-armed dispatch.
//!
//! Each backend knows how to
//! - find the [home](crate::home) of its loop and have the loop watch the home's signal;
//! - tell whether this thread runs the loop right now (the loop's thread is whichever thread
//!   runs it now, not the one that first met it);
//! - *park* a task (the object to yield to the loop, and what the loop sends back) and *wake*
//!   it (a `Send` [`Wakeup`] delivered from any thread, never waiting for the interpreter);
//! - start an awaitable as a task reporting to a `Completion`, and cancel it (one owner:
//!   `Launch`).

mod abort;
pub(crate) mod asyncio;
mod call_soon;
mod done_callbacks;
mod finished_future;
mod launch;
pub(crate) mod trio;
mod wakeup;
mod wakeup_future;

pub(crate) use abort::Abort;
pub(crate) use wakeup::Wakeup;

use std::sync::{Arc, Weak};

use pyo3::prelude::*;

use crate::glue;
use crate::home::Home;
use crate::visit::Visit;

/// The Python async framework that drives an exported awaitable.
///
/// anyio is not a backend of its own: it runs on asyncio or trio, and its tasks are those
/// frameworks' tasks, so detection reports the framework underneath.
///
/// By default the backend is detected with [`sniffio`](https://pypi.org/project/sniffio/) the
/// first time an awaitable suspends; a ready future never needs one. Fixing it explicitly skips
/// the detection.
///
/// ```
/// use pyo3::prelude::*;
/// use pyo3_async::{Backend, Coroutine};
///
/// let coroutine = Coroutine::new(async { PyResult::Ok(42) }).with_backend(Backend::Trio);
/// # drop(coroutine);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// `asyncio`, including alternative loops such as uvloop that use asyncio's futures.
    Asyncio,
    /// `trio`, through `trio.lowlevel.wait_task_rescheduled` and `reschedule`.
    Trio,
}

impl Backend {
    /// Detects the async framework running the current task with
    /// `sniffio.current_async_library()`; asyncio when sniffio is not installed.
    ///
    /// Call it from code that a task runs (not from a plain loop callback, where sniffio cannot
    /// tell).
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::Backend;
    ///
    /// Python::attach(|py| {
    ///     // Outside any event loop, sniffio reports an error.
    ///     # if py.import("sniffio").is_ok() {
    ///     assert!(Backend::current(py).is_err());
    ///     # }
    /// });
    /// ```
    pub fn current(py: Python<'_>) -> PyResult<Self> {
        Ok(Self::detect(py)?.0)
    }

    /// [`current`](Backend::current), and the running asyncio loop if it found one on the way.
    ///
    /// sniffio's rules, in its order, without a call into its Python code on the common paths:
    /// a name set in `sniffio.thread_local` or in `current_async_library_cvar` (trio sets one),
    /// else asyncio if an asyncio task runs; sniffio itself answers the rest (its error outside
    /// any task).
    pub(crate) fn detect(py: Python<'_>) -> PyResult<(Self, Option<Bound<'_, PyAny>>)> {
        let Some(sniffio) = glue::sniffio(py) else {
            return Ok((Backend::Asyncio, None));
        };
        let named = sniffio
            .thread_local
            .bind(py)
            .getattr(pyo3::intern!(py, "name"))?;
        if !named.is_none() {
            return Ok((Self::named(&named)?, None));
        }
        let named = sniffio
            .name_var
            .bind(py)
            .call_method0(pyo3::intern!(py, "get"))?;
        if !named.is_none() {
            return Ok((Self::named(&named)?, None));
        }
        let running = glue::running_loop(py)?.call0()?;
        if !running.is_none() && !glue::current_task(py)?.call1((&running,))?.is_none() {
            return Ok((Backend::Asyncio, Some(running)));
        }
        let named = sniffio.current_async_library.bind(py).call0()?;
        Ok((Self::named(&named)?, None))
    }

    /// The backend of a library sniffio names.
    fn named(name: &Bound<'_, PyAny>) -> PyResult<Self> {
        match name.extract::<&str>()? {
            "asyncio" => Ok(Backend::Asyncio),
            "trio" => Ok(Backend::Trio),
            other => Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
                "pyo3-async supports asyncio and trio (and anyio on either), not {other:?}"
            ))),
        }
    }

    /// The home of `event_loop` (an asyncio loop, or a trio token), created and watched on
    /// first use, from any thread.
    pub(crate) fn home(self, event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<Home>> {
        match self {
            Backend::Asyncio => asyncio::home(event_loop),
            Backend::Trio => trio::home(event_loop),
        }
    }

    /// The home of the loop running this thread's current task.
    pub(crate) fn current_home(self, py: Python<'_>) -> PyResult<Arc<Home>> {
        match self {
            Backend::Asyncio => asyncio::home(&glue::get_running_loop(py)?.call0()?),
            Backend::Trio => trio::home(&glue::trio_current_token(py)?.call0()?),
        }
    }

    /// Whether this thread runs `home`'s loop right now.
    pub(crate) fn running_here(self, py: Python<'_>, home: &Home) -> bool {
        match self {
            Backend::Asyncio => asyncio::running_here(py, home),
            Backend::Trio => trio::running_here(py, home),
        }
    }

    /// Fails with `RuntimeError` if `home`'s loop takes no more work: an asyncio loop that is
    /// closed, a loop or trio run whose home has died.
    pub(crate) fn check_open(self, py: Python<'_>, home: &Home) -> PyResult<()> {
        let refuses = home.is_dead()
            || (self == Backend::Asyncio
                && home
                    .event_loop()
                    .bind(py)
                    .call_method0(pyo3::intern!(py, "is_closed"))?
                    .is_truthy()?);
        if refuses {
            return Err(closed());
        }
        Ok(())
    }
}

/// What a parker needs of the awaitable's waker state (the [`Waiter`](crate::waker::Waiter),
/// a layer above): the waker decides, the backend only asks.
pub(crate) trait Suspend {
    /// Whether the future was woken during the poll that just returned `Pending`.
    fn woken_during_poll(&self) -> bool;
    /// Hands over the wake-up of a new suspension; gives it back if the future was woken
    /// meanwhile (the loop must then resume the task at once).
    fn park(&self, wakeup: Wakeup) -> Result<(), Wakeup>;
}

/// Parks one Python task on its event loop, suspension after suspension.
///
/// Created on the first suspension of an awaitable (which fixes the loop it belongs to) and kept
/// for the following ones.
pub(crate) enum Parker {
    Asyncio(asyncio::Parker),
    Trio(trio::Parker),
}

impl Parker {
    /// `running` is the running asyncio loop if the caller has it already.
    pub(crate) fn new(
        py: Python<'_>,
        backend: Backend,
        running: Option<Bound<'_, PyAny>>,
        waiter: Weak<dyn Abort>,
    ) -> PyResult<Self> {
        Ok(match backend {
            Backend::Asyncio => Parker::Asyncio(asyncio::Parker::new(py, running)?),
            Backend::Trio => Parker::Trio(trio::Parker::new(py, waiter)?),
        })
    }

    /// Registers the task's wake-up with `waiter` and returns the object to yield to the loop.
    ///
    /// The future has just returned `Pending`; if it was woken meanwhile, the returned object
    /// makes the loop resume the task on its next pass instead of waiting.
    ///
    /// A parker whose home is dead while its loop runs (a home lost between two runs: see
    /// [`resume_after_loss`](Parker::resume_after_loss); or one whose successor passes its
    /// jobs on) moves to the loop's current home first ([`rehome`](Parker::rehome)).
    pub(crate) fn park<'py>(
        &mut self,
        py: Python<'py>,
        waiter: &dyn Suspend,
    ) -> PyResult<Bound<'py, PyAny>> {
        let woken = waiter.woken_during_poll();
        if !woken && self.home().is_dead() {
            self.rehome(py)?;
        }
        match self {
            Parker::Asyncio(parker) => parker.park(py, woken, |wakeup| {
                waiter.park(Wakeup::Asyncio(wakeup)).is_ok()
            }),
            Parker::Trio(parker) => parker.park(py, woken, |wakeup| {
                waiter.park(Wakeup::Trio(wakeup)).is_ok()
            }),
        }
    }

    /// Interprets the value the loop sent when it resumed the task: `Ok(None)` to poll
    /// again, `Ok(Some(object))` to suspend once more on `object` (a suspension in two steps),
    /// `Err` when the loop delivered an exception (cancellation) rather than a wake-up.
    pub(crate) fn resume<'py>(
        &mut self,
        py: Python<'py>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self {
            Parker::Asyncio(_) => Ok(None),
            Parker::Trio(parker) => parker.resume(py, value),
        }
    }

    /// Refuses a resumption that is not the loop's answer to the current suspension (the
    /// coroutine driven by a second task); the suspension stays as it was.
    pub(crate) fn check_resumption(
        &mut self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        match self {
            Parker::Asyncio(parker) => parker.check_resumption(py),
            Parker::Trio(parker) => parker.check_resumption(value),
        }
    }

    /// The home of the parker's loop.
    pub(crate) fn home(&self) -> &Arc<Home> {
        match self {
            Parker::Asyncio(parker) => parker.home(),
            Parker::Trio(parker) => parker.home(),
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Parker::Asyncio(_) => Backend::Asyncio,
            Parker::Trio(_) => Backend::Trio,
        }
    }

    /// What the task is suspended on, as `cr_await` shows it: asyncio's future, or trio's
    /// coroutine (`None` for trio's bare trap, which is no awaitable).
    pub(crate) fn awaiting(&self) -> Option<&Py<PyAny>> {
        match self {
            Parker::Asyncio(parker) => parker.awaiting(),
            Parker::Trio(parker) => parker.awaiting(),
        }
    }

    /// Reports the Python objects of the current suspension that only this parker holds, for
    /// the garbage collector (`tp_traverse`: no Python code, no locks waited for).
    ///
    /// asyncio: the future the task waits for. trio: the trio coroutine a suspension passed
    /// through; the trio task itself is not reported, since trio's runner holds every task
    /// until it ends (a trio task is never garbage while it is parked).
    pub(crate) fn traverse<V: Visit>(&self, visit: &V) -> Result<(), V::Error> {
        match self {
            Parker::Asyncio(parker) => parker.traverse(visit),
            Parker::Trio(parker) => parker.traverse(visit),
        }
    }

    /// The loop's home died, and the loop runs on this thread or is open and idle: the
    /// program took away the home's reader or keeper (`remove_reader`, or cancelled its
    /// timer) and no successor took over (a loop running then gets one: see `Home::lost`;
    /// one between two runs does not). The task will run again, so the coroutine is not
    /// ended as on a closed loop: its task is resumed now (the future it waits for is
    /// resolved), and a next wait moves to the loop's new home (see [`park`](Parker::park)).
    ///
    /// False where the coroutine must end instead: the loop closed (or was collected), or
    /// runs on another thread, or it is a trio run, whose home dies only when the run ends. The
    /// resumption's errors have no caller: an interrupt inside `call_soon` is raised again
    /// where CPython would have raised it, an `Exception` (a loop's own `call_soon` that
    /// fails) is reported as unraisable.
    pub(crate) fn resume_after_loss(&self, py: Python<'_>) -> bool {
        match self {
            Parker::Asyncio(parker) => parker.resume_after_loss(py).unwrap_or_else(|err| {
                if err.is_instance_of::<pyo3::exceptions::PyException>(py) {
                    err.write_unraisable(py, None);
                } else {
                    parker.home().raise_soon(err);
                }
                true
            }),
            Parker::Trio(_) => false,
        }
    }

    /// The parker's home died: an asyncio parker moves to the loop's current home (a new
    /// one, which watches the loop again), unless the loop closed. A trio run's home dies
    /// only with the run.
    fn rehome(&mut self, py: Python<'_>) -> PyResult<()> {
        let moved = match self {
            Parker::Asyncio(parker) => parker.rehome(py)?,
            Parker::Trio(_) => false,
        };
        if moved {
            Ok(())
        } else {
            Err(closed())
        }
    }

    /// Forgets the current suspension, if any, after an exception was thrown in.
    pub(crate) fn abandon(&mut self, py: Python<'_>) {
        match self {
            Parker::Asyncio(parker) => parker.abandon(),
            Parker::Trio(parker) => parker.abandon(py),
        }
    }
}

fn closed() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(
        "the event loop is closed (or the trio run has finished)",
    )
}

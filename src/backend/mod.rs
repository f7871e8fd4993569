//! Event-loop backends: how a Rust-driven awaitable suspends its Python task and how a
//! [`Waker`](std::task::Waker) gets that task running again.
//!
//! Each backend provides two halves:
//! - a *parker*, used on the loop thread by the awaitable's `send`: it produces the object to
//!   yield to the loop (an asyncio future, a trio trap) and interprets what the loop sends back;
//! - a *wake-up*, a `Send` value that the [`Waiter`](crate::waiter::Waiter) hands to whichever
//!   thread calls `wake`, which delivers it directly when that thread is the loop's own, and
//!   through the loop's thread-safe entry point otherwise.

pub(crate) mod asyncio;
pub(crate) mod trio;

use std::cell::RefCell;
use std::sync::Arc;
use std::thread::{self, ThreadId};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::event_loop::EventLoop;
use crate::waiter::Waiter;
use crate::wake_queue::{thread_is_attached, Job, WakeQueue};

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
    /// # fn main() -> PyResult<()> {
    /// Python::attach(|py| {
    ///     // Outside any event loop, sniffio reports an error.
    ///     # if py.import("sniffio").is_ok() {
    ///     assert!(Backend::current(py).is_err());
    ///     # }
    /// });
    /// # Ok(())
    /// # }
    /// ```
    pub fn current(py: Python<'_>) -> PyResult<Self> {
        static CURRENT_LIBRARY: PyOnceLock<Option<Py<PyAny>>> = PyOnceLock::new();
        let detect = CURRENT_LIBRARY.get_or_init(py, || {
            py.import("sniffio")
                .and_then(|sniffio| sniffio.getattr("current_async_library"))
                .ok()
                .map(Bound::unbind)
        });
        let Some(detect) = detect else {
            return Ok(Backend::Asyncio);
        };
        let name = detect.bind(py).call0()?;
        match name.extract::<&str>()? {
            "asyncio" => Ok(Backend::Asyncio),
            "trio" => Ok(Backend::Trio),
            other => Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
                "pyo3-async supports asyncio and trio (and anyio on either), not {other:?}"
            ))),
        }
    }
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
    pub(crate) fn new(py: Python<'_>, backend: Backend, waiter: &Arc<Waiter>) -> PyResult<Self> {
        Ok(match backend {
            Backend::Asyncio => Parker::Asyncio(asyncio::Parker::new(py)?),
            Backend::Trio => Parker::Trio(trio::Parker::new(py, waiter)?),
        })
    }

    /// Registers the task's wake-up with `waiter` and returns the object to yield to the loop.
    ///
    /// The future has just returned `Pending`; if it was woken meanwhile, the returned object
    /// makes the loop resume the task on its next pass instead of waiting.
    pub(crate) fn park<'py>(
        &mut self,
        py: Python<'py>,
        waiter: &Waiter,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Parker::Asyncio(parker) => parker.park(py, waiter),
            Parker::Trio(parker) => parker.park(py, waiter),
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
    pub(crate) fn check_resumption(&mut self, py: Python<'_>) -> PyResult<()> {
        match self {
            Parker::Asyncio(parker) => parker.check_resumption(py),
            Parker::Trio(_) => Ok(()),
        }
    }

    /// The wake queue of the parker's loop, if it has one.
    pub(crate) fn wake_queue(&self) -> Option<&Arc<WakeQueue>> {
        match self {
            Parker::Asyncio(parker) => parker.home().queue.as_ref(),
            Parker::Trio(parker) => parker.home().queue.as_ref(),
        }
    }

    /// The loop this parker's task runs on.
    pub(crate) fn event_loop(&self, py: Python<'_>) -> EventLoop {
        match self {
            Parker::Asyncio(parker) => parker.event_loop(py),
            Parker::Trio(parker) => parker.event_loop(py),
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

/// A loop (an asyncio loop, or a trio run's token), where it runs, and how other threads
/// reach it without the interpreter. One per loop, shared by everything suspended on it.
pub(crate) struct Home {
    pub(crate) event_loop: Py<PyAny>,
    pub(crate) thread: ThreadId,
    /// `None` when the loop cannot watch the queue's socket.
    pub(crate) queue: Option<Arc<WakeQueue>>,
}

thread_local! {
    /// The home of the loop that last ran a suspension on this thread: a thread runs one
    /// loop at a time, so this saves a lookup and an allocation per suspended awaitable.
    static LAST_HOME: RefCell<Option<Arc<Home>>> = const { RefCell::new(None) };
}

impl Home {
    /// The home of `event_loop`, which runs on this thread.
    pub(crate) fn here(
        py: Python<'_>,
        backend: Backend,
        event_loop: &Bound<'_, PyAny>,
    ) -> Arc<Self> {
        let cached = LAST_HOME.with(|last| {
            let last = last.borrow();
            last.as_ref()
                .filter(|home| home.event_loop.is(event_loop))
                .map(Arc::clone)
        });
        if let Some(home) = cached {
            return home;
        }
        crate::exit_guard::install(py);
        let home = Arc::new(Home {
            event_loop: event_loop.clone().unbind(),
            thread: thread::current().id(),
            queue: WakeQueue::for_loop(py, backend, event_loop),
        });
        // The previous loop's home lives on in whatever is still suspended on it.
        let previous = LAST_HOME.with(|last| last.borrow_mut().replace(Arc::clone(&home)));
        drop(previous);
        home
    }
}

/// What a waker must do to get a parked task running again.
pub(crate) enum Wakeup {
    Asyncio(asyncio::Wakeup),
    Trio(trio::Wakeup),
}

impl Wakeup {
    /// Delivers the wake-up, from any thread, without ever waiting for the interpreter: at
    /// once on the loop thread when it is attached, else through the loop's wake queue.
    /// Failures (a closed loop, a finished trio run, an interpreter shutting down) mean nobody
    /// is left to wake, so they are ignored.
    pub(crate) fn deliver(self) {
        let home = match &self {
            Wakeup::Asyncio(wakeup) => wakeup.home(),
            Wakeup::Trio(wakeup) => wakeup.home(),
        };
        if home.thread == thread::current().id() && thread_is_attached() {
            Python::attach(|py| self.deliver_on_loop_thread(py));
        } else if let Some(queue) = home.queue.clone() {
            queue.push(Job::Wake(self));
        } else {
            self.deliver_threadsafe();
        }
    }

    /// Delivers the wake-up through the loop's thread-safe entry point, from any thread.
    pub(crate) fn deliver_threadsafe(self) {
        match self {
            Wakeup::Asyncio(wakeup) => wakeup.deliver_threadsafe(),
            Wakeup::Trio(wakeup) => wakeup.deliver_threadsafe(),
        }
    }

    /// Delivers the wake-up on the loop thread.
    pub(crate) fn deliver_on_loop_thread(self, py: Python<'_>) {
        match self {
            Wakeup::Asyncio(wakeup) => wakeup.deliver_on_loop_thread(py),
            Wakeup::Trio(wakeup) => wakeup.deliver_on_loop_thread(py),
        }
    }
}

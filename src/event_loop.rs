//! A handle on a running Python event loop, usable from any thread.

use std::fmt;
use std::sync::Arc;

use pyo3::prelude::*;

use crate::backend::{asyncio, trio, Backend, Home};
use crate::exit_guard;
use crate::py_to_rust::{spawn, Completion, PyFuture, TaskSlot};
use crate::wake_queue::{Job, WakeQueue};

/// A running asyncio loop (uvloop included) or trio run, to schedule Python work on from any
/// thread: `Send + Sync`, and cheap to clone.
///
/// Capture it with [`EventLoop::current`] from code a Python task runs (a `#[pyfunction]`
/// called by a coroutine, say), or build it from an asyncio loop or a `trio.lowlevel.TrioToken`.
///
/// ```
/// use pyo3::prelude::*;
/// use pyo3_async::EventLoop;
///
/// /// Called from a coroutine, `run_later(asyncio.sleep(1))` runs the sleep from a Rust thread.
/// #[pyfunction]
/// fn run_later(py: Python<'_>, awaitable: Py<PyAny>) -> PyResult<()> {
///     let event_loop = EventLoop::current(py)?;
///     std::thread::spawn(move || {
///         let future = Python::attach(|py| event_loop.spawn(awaitable.bind(py)));
///         if let Ok(future) = future {
///             let _ = futures::executor::block_on(future.detach());
///         }
///     });
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct EventLoop {
    inner: Arc<Inner>,
    /// The loop's wake queue, when the handle was captured on the loop's thread: it lets
    /// [`EventLoop::spawn_with`] reach the loop without the interpreter.
    pub(crate) queue: Option<Arc<WakeQueue>>,
}

pub(crate) enum Inner {
    /// The asyncio loop object.
    Asyncio(Py<PyAny>),
    /// The run's `TrioToken`.
    Trio(Py<PyAny>),
}

impl EventLoop {
    /// The loop running the current task: the running asyncio loop, or the trio run's token,
    /// detected with sniffio.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::EventLoop;
    ///
    /// Python::attach(|py| {
    ///     // No loop runs here.
    ///     assert!(EventLoop::current(py).is_err());
    /// });
    /// ```
    pub fn current(py: Python<'_>) -> PyResult<Self> {
        let backend = Backend::current(py)?;
        let (handle, inner): (_, fn(Py<PyAny>) -> Inner) = match backend {
            Backend::Asyncio => (asyncio::get_running_loop(py)?, Inner::Asyncio),
            Backend::Trio => (trio::current_token(py)?, Inner::Trio),
        };
        Ok(EventLoop {
            inner: Arc::new(inner(handle.clone().unbind())),
            // On the loop's thread, the one place its queue can be registered.
            queue: Home::here(py, backend, &handle).queue.clone(),
        })
    }

    /// An asyncio event loop (it need not run yet; it must when work is scheduled).
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::{Backend, EventLoop};
    ///
    /// # fn main() -> PyResult<()> {
    /// Python::attach(|py| {
    ///     let event_loop = py.import("asyncio")?.call_method0("new_event_loop")?;
    ///     assert_eq!(EventLoop::asyncio(&event_loop).backend(), Backend::Asyncio);
    ///     event_loop.call_method0("close")?;
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn asyncio(event_loop: &Bound<'_, PyAny>) -> Self {
        exit_guard::install(event_loop.py());
        Self::from_inner(Inner::Asyncio(event_loop.clone().unbind()))
    }

    /// A trio run, by its `trio.lowlevel.TrioToken`.
    ///
    /// ```no_run
    /// use pyo3::prelude::*;
    /// use pyo3_async::EventLoop;
    ///
    /// #[pyfunction]
    /// fn remember_run(token: Bound<'_, PyAny>) -> PyResult<()> {
    ///     let run = EventLoop::trio(&token);
    ///     # drop(run);
    ///     Ok(())
    /// }
    /// ```
    pub fn trio(token: &Bound<'_, PyAny>) -> Self {
        exit_guard::install(token.py());
        Self::from_inner(Inner::Trio(token.clone().unbind()))
    }

    fn from_inner(inner: Inner) -> Self {
        EventLoop {
            inner: Arc::new(inner),
            queue: None,
        }
    }

    /// Which framework runs this loop.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::{Backend, EventLoop};
    ///
    /// # fn main() -> PyResult<()> {
    /// Python::attach(|py| {
    ///     let event_loop = py.import("asyncio")?.call_method0("new_event_loop")?;
    ///     assert_eq!(EventLoop::asyncio(&event_loop).backend(), Backend::Asyncio);
    ///     event_loop.call_method0("close")?;
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn backend(&self) -> Backend {
        match *self.inner {
            Inner::Asyncio(_) => Backend::Asyncio,
            Inner::Trio(_) => Backend::Trio,
        }
    }

    /// Schedules `awaitable` (a coroutine, a [`Coroutine`](crate::Coroutine), any object with
    /// `__await__`) on this loop, from any thread: an asyncio task, or a trio system task. It
    /// runs in a copy of the calling thread's `contextvars` context, and the returned
    /// [`PyFuture`] resolves with its result; dropping the `PyFuture` cancels it.
    ///
    /// Fails at once when the loop is closed or the trio run has finished.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::EventLoop;
    ///
    /// # fn main() -> PyResult<()> {
    /// Python::attach(|py| {
    ///     let asyncio = py.import("asyncio")?;
    ///     let event_loop = asyncio.call_method0("new_event_loop")?;
    ///     let future = EventLoop::asyncio(&event_loop).spawn(&asyncio.call_method1("sleep", (0, "done"))?)?;
    ///     // A Rust executor would await `future`; here the loop runs until the task is done.
    ///     event_loop.call_method1("run_until_complete", (asyncio.call_method1("sleep", (0.01,))?,))?;
    ///     let result = futures::executor::block_on(future)?;
    ///     assert_eq!(result.extract::<String>(py)?, "done");
    ///     event_loop.call_method0("close")?;
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn spawn(&self, awaitable: &Bound<'_, PyAny>) -> PyResult<PyFuture> {
        spawn::spawn(self, awaitable)
    }

    /// Schedules the awaitable that `make` builds, from any thread, **without attaching this
    /// thread to the interpreter**: `make` runs on the loop's thread, which then schedules the
    /// awaitable as [`spawn`](EventLoop::spawn) does (in a copy of the loop's `contextvars`
    /// context). A thread that never attaches cannot be caught by the interpreter shutting down
    /// (CPython kills threads that attach during finalisation, which aborts a Rust process).
    ///
    /// This needs a handle from [`EventLoop::current`] (captured on the loop's thread); other
    /// handles attach to build the awaitable here. If the loop is closed or the interpreter is
    /// shutting down, the returned future resolves with an error.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::{Coroutine, EventLoop};
    ///
    /// /// `await later(coroutine_function)`: a Rust thread runs it on this loop.
    /// #[pyfunction]
    /// fn later(py: Python<'_>, coroutine_function: Py<PyAny>) -> PyResult<Coroutine> {
    ///     let event_loop = EventLoop::current(py)?;
    ///     let (tx, rx) = futures::channel::oneshot::channel();
    ///     std::thread::spawn(move || {
    ///         let call = event_loop.spawn_with(move |py| coroutine_function.bind(py).call0());
    ///         let _ = tx.send(futures::executor::block_on(call));
    ///     });
    ///     Ok(Coroutine::new(async move {
    ///         rx.await.map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("thread died"))?
    ///     }))
    /// }
    /// ```
    pub fn spawn_with<F>(&self, make: F) -> PyFuture
    where
        F: for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyAny>> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let slot = Arc::new(TaskSlot::default());
        let event_loop = self.clone();
        let task_slot = Arc::clone(&slot);
        // If this never runs (a dead loop, a finalising interpreter), the sender is dropped and
        // the future resolves with an error.
        let start = move |py: Python<'_>| {
            let Ok(completion) = Completion::from_sender(py, sender) else {
                return;
            };
            let started = make(py).and_then(|awaitable| {
                spawn::check_awaitable(&awaitable)?;
                spawn::start(&event_loop, &awaitable, completion.bind(py), &task_slot)
            });
            if let Err(err) = started {
                completion.get().complete(Err(err));
            }
        };
        match &self.queue {
            Some(queue) => queue.push(Job::Call(Box::new(start))),
            None => {
                exit_guard::attach_unless_exiting(start);
            }
        }
        PyFuture::waiting(receiver, slot)
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

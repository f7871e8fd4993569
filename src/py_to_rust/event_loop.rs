//! A handle on a Python event loop, usable from any thread.

use std::fmt;
use std::sync::Arc;

use pyo3::prelude::*;

use crate::backend::Backend;
use crate::glue;
use crate::home::Home;
use crate::py_to_rust::context::{self, PyContext};
use crate::py_to_rust::py_future::{check_awaitable, PyFuture};
use crate::task::{Completion, Launch, TaskSlot};

/// An asyncio loop (uvloop included) or trio run, to schedule Python work on from any
/// thread: `Send + Sync`, and cheap to clone.
///
/// Every handle on a loop, however obtained, reaches it the same way: through the loop's
/// *home*, a queue the loop drains on its thread (watched with `add_reader` on asyncio, a
/// system task on trio), which any thread can feed without attaching to the interpreter.
///
/// Which `contextvars` context scheduled work runs in:
/// - [`spawn`](EventLoop::spawn): a copy of the calling thread's current context;
/// - [`spawn_with`](EventLoop::spawn_with): a new, empty context (the calling thread may not
///   be attached to the interpreter, so it has none);
/// - either, on a handle made by [`with_context`](EventLoop::with_context): a fresh copy of
///   that context, per job.
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
///         let future = event_loop.spawn_with(move |py| Ok(awaitable.into_bound(py)));
///         let _ = futures::executor::block_on(future.detach());
///     });
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct EventLoop {
    home: Arc<Home>,
    backend: Backend,
    context: Option<PyContext>,
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
        let (backend, running) = Backend::detect(py)?;
        let home = match running {
            Some(running) => backend.home(&running)?,
            None => backend.current_home(py)?,
        };
        Ok(Self::from_home(home, backend))
    }

    /// An asyncio event loop, from any thread (it need not run yet; it must when work is
    /// scheduled). Fails only if the loop's wake signal cannot be created.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::{Backend, EventLoop};
    ///
    /// # fn main() -> PyResult<()> {
    /// Python::attach(|py| {
    ///     let event_loop = py.import("asyncio")?.call_method0("new_event_loop")?;
    ///     assert_eq!(EventLoop::asyncio(&event_loop)?.backend(), Backend::Asyncio);
    ///     event_loop.call_method0("close")?;
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn asyncio(event_loop: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self::from_home(
            Backend::Asyncio.home(event_loop)?,
            Backend::Asyncio,
        ))
    }

    /// A trio run, by its `trio.lowlevel.TrioToken`, from any thread.
    ///
    /// ```no_run
    /// use pyo3::prelude::*;
    /// use pyo3_async::EventLoop;
    ///
    /// #[pyfunction]
    /// fn remember_run(token: Bound<'_, PyAny>) -> PyResult<()> {
    ///     let run = EventLoop::trio(&token)?;
    ///     # drop(run);
    ///     Ok(())
    /// }
    /// ```
    pub fn trio(token: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self::from_home(Backend::Trio.home(token)?, Backend::Trio))
    }

    pub(crate) fn from_home(home: Arc<Home>, backend: Backend) -> Self {
        EventLoop {
            home,
            backend,
            context: None,
        }
    }

    /// This handle, scheduling its work in fresh copies of `context` (see [`PyContext`]).
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::{EventLoop, PyContext};
    ///
    /// #[pyfunction]
    /// fn capture(py: Python<'_>) -> PyResult<()> {
    ///     let event_loop = EventLoop::current(py)?.with_context(PyContext::current(py)?);
    ///     # drop(event_loop);
    ///     Ok(())
    /// }
    /// ```
    pub fn with_context(mut self, context: PyContext) -> Self {
        self.context = Some(context);
        self
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
    ///     assert_eq!(EventLoop::asyncio(&event_loop)?.backend(), Backend::Asyncio);
    ///     event_loop.call_method0("close")?;
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The asyncio loop object, or the trio run's token.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::EventLoop;
    ///
    /// # fn main() -> PyResult<()> {
    /// Python::attach(|py| {
    ///     let asyncio_loop = py.import("asyncio")?.call_method0("new_event_loop")?;
    ///     let event_loop = EventLoop::asyncio(&asyncio_loop)?;
    ///     assert!(event_loop.as_any(py).is(&asyncio_loop));
    ///     asyncio_loop.call_method0("close")?;
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn as_any<'py>(&self, py: Python<'py>) -> &Bound<'py, PyAny> {
        self.home.event_loop().bind(py)
    }

    /// Schedules `awaitable` (a coroutine, a [`Coroutine`](crate::Coroutine), any object with
    /// `__await__`) on this loop, from any thread: an asyncio task, or a trio system task, in
    /// a copy of the calling thread's context (or of the handle's, see
    /// [`with_context`](EventLoop::with_context)). The returned [`PyFuture`] resolves with its
    /// result; dropping the `PyFuture` cancels it.
    ///
    /// On the loop's own thread, the task is created at once. From another thread, that thread
    /// only checks the awaitable and copies its context; the loop's thread creates the task, so
    /// the caller holds the interpreter as briefly as possible. To make the awaitable without
    /// attaching at all, use [`spawn_with`](EventLoop::spawn_with).
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
    ///     let future = EventLoop::asyncio(&event_loop)?.spawn(&asyncio.call_method1("sleep", (0, "done"))?)?;
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
        let py = awaitable.py();
        check_awaitable(awaitable)?;
        let context = match &self.context {
            Some(context) => context.copy(py)?,
            None => glue::copy_context(py)?.call0()?,
        };
        if !self.backend.running_here(py, &self.home) {
            // Another thread: only what must happen here (the checks, the copy of this
            // thread's context) is done attached; the task is made by a job on the loop's
            // thread, so this thread lets go of the interpreter at once and the woken loop
            // does not wait for it.
            self.backend.check_open(py, &self.home)?;
            let awaitable = awaitable.clone().unbind();
            let context = context.unbind();
            return Ok(
                self.start_soon(move |py| Ok((awaitable.into_bound(py), context.into_bound(py))))
            );
        }
        let (completion, receiver) = Completion::channel(py)?;
        let slot = Arc::new(TaskSlot::default());
        Launch {
            home: Arc::clone(&self.home),
            awaitable: awaitable.clone(),
            context,
            completion: completion.into_bound(py),
            slot: Arc::clone(&slot),
        }
        .start(self.backend)?;
        Ok(PyFuture::waiting(receiver, slot))
    }

    /// Schedules the awaitable that `make` builds, from any thread, **without attaching this
    /// thread to the interpreter**: `make` runs on the loop's thread, which then schedules the
    /// awaitable as [`spawn`](EventLoop::spawn) does, in a new, empty context (or a fresh copy
    /// of the handle's, see [`with_context`](EventLoop::with_context)). `make` itself runs in
    /// that context: what it sets in `contextvars` is its job's alone. A thread that never
    /// attaches cannot be caught by the interpreter shutting down (CPython kills threads that
    /// attach during finalisation, which aborts a Rust process).
    ///
    /// If the loop is closed or the interpreter is shutting down, the returned future resolves
    /// with an error; an error of `make` is the future's.
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
        let event_loop = self.clone();
        self.start_soon(move |py| {
            let context = match &event_loop.context {
                Some(context) => context.copy(py)?,
                None => glue::new_context(py)?.call0()?,
            };
            // The factory is part of the job: it runs in the job's context, so what it sets
            // is the job's alone (the drain's context is shared by every job of the loop).
            let awaitable = context::run_in(&context, make)?;
            check_awaitable(&awaitable)?;
            Ok((awaitable, context))
        })
    }

    /// Starts, in a job of the loop's thread, the awaitable and context that `make` gives.
    /// If the job never runs (a dead loop), its sender is dropped and the future resolves with
    /// an error; an error of `make` is the future's.
    fn start_soon<F>(&self, make: F) -> PyFuture
    where
        F: for<'py> FnOnce(Python<'py>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)>
            + Send
            + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let slot = Arc::new(TaskSlot::default());
        let (home, backend) = (Arc::clone(&self.home), self.backend);
        let task_slot = Arc::clone(&slot);
        self.home.run(Box::new(move |py| {
            let completion = Completion::new(py, sender, None)?;
            let started = make(py).and_then(|(awaitable, context)| {
                Launch {
                    home,
                    awaitable,
                    context,
                    completion: completion.bind(py).clone(),
                    slot: task_slot,
                }
                .start(backend)
            });
            match started {
                Ok(()) => Ok(()),
                // An interrupt propagates from the loop's callback as from any other.
                Err(err) if !err.is_instance_of::<pyo3::exceptions::PyException>(py) => {
                    completion.get().complete(Err(err.clone_ref(py)));
                    Err(err)
                }
                Err(err) => {
                    completion.get().complete(Err(err));
                    Ok(())
                }
            }
        }));
        PyFuture::waiting(receiver, slot)
    }

    /// The loop's home: the one way onto its thread.
    pub(crate) fn home(&self) -> &Arc<Home> {
        &self.home
    }
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

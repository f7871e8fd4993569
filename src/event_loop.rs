//! A handle on a running Python event loop, usable from any thread.

use std::fmt;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::backend::Backend;
use crate::py_to_rust::{spawn, PyFuture};

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
        static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        static CURRENT_TRIO_TOKEN: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        Ok(match Backend::current(py)? {
            Backend::Asyncio => Self::asyncio(
                &GET_RUNNING_LOOP
                    .import(py, "asyncio", "get_running_loop")?
                    .call0()?,
            ),
            Backend::Trio => Self::trio(
                &CURRENT_TRIO_TOKEN
                    .import(py, "trio.lowlevel", "current_trio_token")?
                    .call0()?,
            ),
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
        Self::from_inner(Inner::Trio(token.clone().unbind()))
    }

    fn from_inner(inner: Inner) -> Self {
        EventLoop {
            inner: Arc::new(inner),
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

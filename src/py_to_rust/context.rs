//! A `contextvars` context captured in Rust, to run scheduled Python work in.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::glue;
use crate::rust_to_py::panic::panic_exception;

/// A snapshot of Python `contextvars` (a `contextvars.Context`), `Send + Sync` and cheap to
/// clone: capture it on the loop's thread, carry it across threads (a tokio hop, say), and run
/// scheduled work in it with [`EventLoop::with_context`](crate::EventLoop::with_context).
///
/// Work scheduled with a context runs in **a fresh copy** of it, one per job: values the job
/// sets are never seen by the caller or by other jobs. This is what pyo3-async-runtimes
/// users do with `TaskLocals::copy_context`.
///
/// ```
/// use pyo3::prelude::*;
/// use pyo3_async::{EventLoop, PyContext};
///
/// /// Called from a task: runs `awaitable` from a Rust thread, seeing this task's contextvars
/// /// (a request id, say) as they are now.
/// #[pyfunction]
/// fn later_with_my_context(py: Python<'_>, awaitable: Py<PyAny>) -> PyResult<()> {
///     let event_loop = EventLoop::current(py)?.with_context(PyContext::current(py)?);
///     std::thread::spawn(move || {
///         let done = event_loop.spawn_with(move |py| Ok(awaitable.into_bound(py)));
///         let _ = futures::executor::block_on(done);
///     });
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct PyContext {
    context: Arc<Py<PyAny>>,
}

impl PyContext {
    /// A copy of the calling thread's current context (`contextvars.copy_context()`).
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::PyContext;
    ///
    /// # fn main() -> PyResult<()> {
    /// Python::attach(|py| {
    ///     let context = PyContext::current(py)?;
    ///     assert!(context.as_any(py).is_instance(&py.import("contextvars")?.getattr("Context")?)?);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn current(py: Python<'_>) -> PyResult<Self> {
        Ok(Self::from_context(glue::copy_context(py)?.call0()?))
    }

    /// A new, empty context: what a thread Python did not start sees.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::PyContext;
    ///
    /// # fn main() -> PyResult<()> {
    /// Python::attach(|py| {
    ///     assert_eq!(PyContext::empty(py)?.as_any(py).len()?, 0);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn empty(py: Python<'_>) -> PyResult<Self> {
        Ok(Self::from_context(glue::new_context(py)?.call0()?))
    }

    fn from_context(context: Bound<'_, PyAny>) -> Self {
        PyContext {
            context: Arc::new(context.unbind()),
        }
    }

    /// The `contextvars.Context` object itself.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::PyContext;
    ///
    /// Python::attach(|py| {
    ///     let context = PyContext::empty(py).unwrap();
    ///     assert_eq!(context.as_any(py).len().unwrap(), 0);
    /// });
    /// ```
    pub fn as_any<'py>(&self, py: Python<'py>) -> &Bound<'py, PyAny> {
        self.context.bind(py)
    }

    /// A fresh copy, for one job.
    pub(crate) fn copy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.as_any(py).call_method0(pyo3::intern!(py, "copy"))
    }
}

/// Runs `make` with `context` entered, as `context.run(make)` does: what `make` sets in
/// `contextvars` stays in `context` (the job's own), never in the context of whoever called.
/// `context` must be a `contextvars.Context` that is not entered already (a fresh copy or a
/// new context never is). A panic of `make` — PyO3 resumes one when Python code raises its
/// `PanicException` — is the result's error ([`PanicError`](crate::PanicError)): the context
/// is exited whatever happens, or the loop's thread would stay in it, every later callback
/// failing to enter its own.
pub(crate) fn run_in<'py, F>(context: &Bound<'py, PyAny>, make: F) -> PyResult<Bound<'py, PyAny>>
where
    F: for<'a> FnOnce(Python<'a>) -> PyResult<Bound<'a, PyAny>> + Send + 'static,
{
    imp::run_in(context, move |py| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| make(py)))
            .unwrap_or_else(|payload| Err(panic_exception(payload)))
    })
}

/// The full API enters and exits the context directly.
#[cfg(not(any(Py_LIMITED_API, PyPy)))]
mod imp {
    use pyo3::ffi;
    use pyo3::prelude::*;

    pub(super) fn run_in<'py, F>(
        context: &Bound<'py, PyAny>,
        make: F,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        F: for<'a> FnOnce(Python<'a>) -> PyResult<Bound<'a, PyAny>>,
    {
        let py = context.py();
        // SAFETY: the thread is attached and `context` is a live object; `PyContext_Enter`
        // refuses (with an exception set) anything but a context that is not entered yet.
        if unsafe { ffi::PyContext_Enter(context.as_ptr()) } != 0 {
            return Err(PyErr::fetch(py));
        }
        let made = make(py); // it cannot unwind (`run_in` catches its panics)
                             // SAFETY: the context this thread entered above; whatever `make` entered meanwhile it
                             // exited again (`Context.run` and `PyContext_Exit` pair up), so it is current.
        if unsafe { ffi::PyContext_Exit(context.as_ptr()) } != 0 {
            let exited = PyErr::fetch(py);
            return made.and(Err(exited));
        }
        made
    }
}

/// The limited API has no `PyContext_Enter`: `Context.run` calls `make`, once.
#[cfg(any(Py_LIMITED_API, PyPy))]
mod imp {
    use std::sync::{Mutex, PoisonError};

    use pyo3::exceptions::PyRuntimeError;
    use pyo3::prelude::*;
    use pyo3::types::{PyCFunction, PyDict, PyTuple};

    pub(super) fn run_in<'py, F>(
        context: &Bound<'py, PyAny>,
        make: F,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        F: for<'a> FnOnce(Python<'a>) -> PyResult<Bound<'a, PyAny>> + Send + 'static,
    {
        let py = context.py();
        let make = Mutex::new(Some(make));
        let call = move |args: &Bound<'_, PyTuple>, _: Option<&Bound<'_, PyDict>>| {
            let make = make.lock().unwrap_or_else(PoisonError::into_inner).take();
            let make = make.ok_or_else(|| PyRuntimeError::new_err("the factory ran already"))?;
            make(args.py()).map(Bound::unbind)
        };
        let function = PyCFunction::new_closure(py, None, None, call)?;
        context.call_method1(pyo3::intern!(py, "run"), (function,))
    }
}

impl std::fmt::Debug for PyContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyContext").finish_non_exhaustive()
    }
}

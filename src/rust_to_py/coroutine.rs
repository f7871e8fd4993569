//! A Rust future exported as a Python coroutine object.

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyValueError};
use pyo3::prelude::*;
#[cfg(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED)))]
use pyo3::{sync::PyOnceLock, types::PyType};
use pyo3::{PyTraverseError, PyVisit};

use crate::backend::Backend;
use crate::census;
use crate::glue;
use crate::rust_to_py::cancel_handle::{CancelHandle, Cancellation};
#[cfg(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED)))]
use crate::rust_to_py::coroutine_wrapper;
use crate::rust_to_py::driver::{Driver, Resumed, SharedDriver};
use crate::rust_to_py::errors::thrown_exception;
use crate::rust_to_py::label::{Label, StaticLabel};
use crate::rust_to_py::pollable::{IntoPyFuture, PyPoll};
use crate::rust_to_py::send_slot;
use crate::rust_to_py::thread_bound::ThreadBound;

/// A Rust future as a Python coroutine object, driven by the Python event loop.
///
/// It has `__await__`, `send`, `throw` and `close`, so it passes `asyncio.iscoroutine` and can
/// be awaited, given to `asyncio.create_task`, `gather`, `run_coroutine_threadsafe`, or to
/// trio and anyio. Each `send` polls the future on the loop thread; when the future is pending
/// the task is suspended on the loop (an asyncio future, a trio `wait_task_rescheduled`) and
/// the future's [`Waker`](std::task::Waker) — callable from any thread — resumes it. No Rust runtime is
/// involved: the future may use one (tokio, smol) if it needs it.
///
/// - A future that is ready at the first poll completes without touching the event loop.
/// - `Err(e)` raises `e` with its own type; a panic raises [`PanicError`](crate::PanicError)
///   (an `Exception`) with the panic's message, and the event loop keeps running.
/// - Cancelling the task drops the future and re-raises the very exception that cancelled it,
///   unless the future asked to see the cancellation with [`Coroutine::with_cancel_handle`].
/// - The backend is detected with sniffio at the first suspension, or fixed with
///   [`Coroutine::with_backend`].
/// - Wrap the future in [`AllowThreads`](crate::AllowThreads) to poll it with the interpreter
///   released.
///
/// ```
/// use std::time::Duration;
/// use pyo3::prelude::*;
/// use pyo3_async::Coroutine;
///
/// /// `await sleep_then_add(0.1, 1, 2)` in Python returns 3 after 100 ms.
/// #[pyfunction]
/// fn sleep_then_add(seconds: f64, a: i64, b: i64) -> Coroutine {
///     Coroutine::new(async move {
///         let (tx, rx) = futures::channel::oneshot::channel();
///         std::thread::spawn(move || {
///             std::thread::sleep(Duration::from_secs_f64(seconds));
///             let _ = tx.send(());
///         });
///         let _ = rx.await;
///         Ok(a + b)
///     })
/// }
/// ```
#[pyclass(module = "pyo3_async", frozen, weakref)]
pub struct Coroutine {
    /// `__qualname__` (and, after its last dot, `__name__`), for reprs and tracebacks, and
    /// where the Rust function is, for the traceback entry of an exception it raises.
    label: Option<Label>,
    /// Shared (weakly) with the home of the loop it is bound to, which finishes it if that
    /// loop dies. The future lives in the same allocation.
    driver: Arc<dyn SharedDriver>,
    /// Set once the coroutine was awaited, started or closed: `__await__` then takes the
    /// driver's lock to tell which (an error either way). Keeps the lock off the common path;
    /// a race between threads that both pass it is still caught by the lock in `resume`.
    claimed: AtomicBool,
    /// Whether dropping it unclaimed warns "coroutine ... was never awaited", as a native
    /// coroutine does; off for the steps of an async generator (CPython's `__anext__`
    /// awaitables do not warn either) and the crate's own helpers.
    warns_unawaited: bool,
}

impl Coroutine {
    /// Wraps a future whose output converts to a Python object.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::Coroutine;
    ///
    /// let coroutine = Coroutine::new(async { PyResult::Ok("ready") });
    /// # drop(coroutine);
    /// ```
    pub fn new<F, T>(future: F) -> Self
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: for<'py> IntoPyObject<'py> + 'static,
    {
        Self::from_pollable(IntoPyFuture(future), None, None)
    }

    /// Wraps the future built by `make`, which receives a [`CancelHandle`]: cancelling the
    /// Python task then no longer drops the future but notifies the handle, and the coroutine
    /// ends when the future does.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::Coroutine;
    ///
    /// let coroutine = Coroutine::with_cancel_handle(|cancel| async move {
    ///     let cancelled = cancel.cancelled().await;
    ///     // ... asynchronous cleanup ...
    ///     PyResult::<()>::Err(cancelled)
    /// });
    /// # drop(coroutine);
    /// ```
    pub fn with_cancel_handle<M, F, T>(make: M) -> Self
    where
        M: FnOnce(CancelHandle) -> F,
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: for<'py> IntoPyObject<'py> + 'static,
    {
        let cancellation = Cancellation::new();
        let future = make(cancellation.handle());
        Self::from_pollable(IntoPyFuture(future), Some(cancellation), None)
    }

    /// Wraps a future that is not `Send` (it holds an `Rc`, a `RefCell` borrow, a `!Send`
    /// handle), for a coroutine that only ever runs on the thread that creates it: in an
    /// exported function, the event loop's thread that calls it.
    ///
    /// Python may still hand the coroutine object to another thread. Awaited there, it raises
    /// `RuntimeError` without touching the future; dropped there, the future is leaked rather
    /// than dropped on a thread it cannot be sent to. `#[pyo3_async::pyfunction(local)]` and
    /// `#[pyo3_async(local)]` on methods make the same.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use pyo3::prelude::*;
    /// use pyo3_async::Coroutine;
    ///
    /// #[pyfunction]
    /// fn count_to(n: u32) -> Coroutine {
    ///     let counter = Rc::new(Cell::new(0));
    ///     Coroutine::local(async move {
    ///         for _ in 0..n {
    ///             counter.set(counter.get() + 1);
    ///         }
    ///         PyResult::Ok(counter.get())
    ///     })
    /// }
    /// # drop(count_to(3));
    /// ```
    pub fn local<F, T>(future: F) -> Self
    where
        F: Future<Output = PyResult<T>> + 'static,
        T: for<'py> IntoPyObject<'py> + 'static,
    {
        Self::new(ThreadBound::new(future))
    }

    /// Fixes the event-loop backend instead of detecting it at the first suspension.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::{Backend, Coroutine};
    ///
    /// let coroutine = Coroutine::new(async { PyResult::Ok(()) }).with_backend(Backend::Asyncio);
    /// # drop(coroutine);
    /// ```
    pub fn with_backend(self, backend: Backend) -> Self {
        self.driver
            .mutex()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_backend(backend);
        self
    }

    /// Sets `__qualname__` (and `__name__`, its part after the last dot), which asyncio shows
    /// in task reprs. The attribute macros set it to the Rust function's name.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::Coroutine;
    ///
    /// let coroutine = Coroutine::new(async { PyResult::Ok(()) }).with_qualname("Client.fetch");
    /// # drop(coroutine);
    /// ```
    pub fn with_qualname(mut self, qualname: impl Into<Cow<'static, str>>) -> Self {
        self.label = Some(Label::with(self.label.take(), Some(qualname.into()), None));
        self
    }

    /// Names the Rust source of the future: an exception the coroutine raises then gets a
    /// traceback entry `File "<file>", line <line>, in <qualname>`. The attribute macros set
    /// it to the function's definition.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::Coroutine;
    ///
    /// let coroutine = Coroutine::new(async { PyResult::<()>::Err(pyo3::exceptions::PyKeyError::new_err("k")) })
    ///     .with_qualname("lookup")
    ///     .with_source(file!(), line!());
    /// # drop(coroutine);
    /// ```
    pub fn with_source(mut self, file: &'static str, line: u32) -> Self {
        self.label = Some(Label::with(self.label.take(), None, Some((file, line))));
        self
    }

    /// The attribute macros' `with_qualname` and `with_source`, from a static of the function.
    #[doc(hidden)]
    pub fn __with_label(mut self, label: &'static StaticLabel) -> Self {
        self.label = Some(Label::Static(label));
        self
    }

    /// The one constructor: the driver and the future share one allocation.
    pub(crate) fn from_pollable<P: PyPoll + 'static>(
        future: P,
        cancellation: Option<Arc<Cancellation>>,
        backend: Option<Backend>,
    ) -> Self {
        let driver: Arc<Mutex<Driver<P>>> =
            Arc::new(Mutex::new(Driver::new(future, cancellation, backend)));
        Coroutine {
            label: None,
            driver,
            claimed: AtomicBool::new(false),
            warns_unawaited: true,
        }
    }

    /// A coroutine that is dropped unawaited in silence: an internal step that Python code
    /// may legitimately never await.
    pub(crate) fn without_unawaited_warning(mut self) -> Self {
        self.warns_unawaited = false;
        self
    }

    /// What a frame standing for the Rust function says of it: its name, qualified name, file
    /// and line (`<rust>`, line 1, when the source is not known).
    fn frame_fields(&self) -> (&str, &str, &'static str, u32) {
        let qualname = self.__qualname__();
        let (file, line) = self
            .label
            .as_ref()
            .and_then(Label::source)
            .unwrap_or(("<rust>", 1));
        (self.__name__(), qualname, file, line)
    }

    /// Gives an exception leaving a named coroutine a traceback entry for the Rust function.
    #[cold]
    fn locate(&self, py: Python<'_>, err: PyErr) -> PyErr {
        if self.label.as_ref().and_then(Label::qualname).is_none() {
            return err;
        }
        let (name, qualname, file, line) = self.frame_fields();
        let located = glue::add_frame(py)
            .and_then(|add_frame| add_frame.call1((err.value(py), name, qualname, file, line)));
        match located {
            Ok(exception) => PyErr::from_value(exception),
            Err(_) => err,
        }
    }

    /// Runs `step` on the driver; an exception of the Rust function leaving it gets the
    /// function's frame (a cancellation passing through does not: it is not the function's,
    /// and building frames for 100k cancelled coroutines is what made cancelling slow).
    pub(crate) fn resume(
        &self,
        py: Python<'_>,
        step: impl FnOnce(&mut Driver) -> PyResult<Resumed>,
    ) -> PyResult<Resumed> {
        let mut driver = self.driver()?;
        #[cfg(feature = "tracing")]
        let span = self.span(py, &mut driver);
        #[cfg(feature = "tracing")]
        let _entered = span.enter();
        let resumed = step(&mut driver);
        if driver.started {
            self.claimed.store(true, Ordering::Relaxed);
        }
        if let Some(home) = driver.home_to_register() {
            // Bound to a loop for the first time: the loop's death finishes the coroutine.
            home.depend(py, Arc::clone(&self.driver).dependent());
            driver.registered = true;
            census::SUSPENDED_COROUTINES.add();
        }
        let rethrown = driver.take_rethrown();
        drop(driver);
        match resumed {
            Err(err) if !rethrown => Err(self.locate(py, err)),
            resumed => resumed,
        }
    }

    /// The span to enter around a resumption: made at the first one (inside the task that
    /// runs the coroutine, whose loop and name it records), unless a generator gave its own.
    #[cfg(feature = "tracing")]
    fn span(&self, py: Python<'_>, driver: &mut Driver) -> tracing::Span {
        let span = driver.span.get_or_insert_with(|| {
            let span = crate::rust_to_py::poll_span::coroutine(self.__qualname__());
            crate::rust_to_py::poll_span::record_task(py, &span);
            span
        });
        span.clone()
    }

    /// A step of a generator runs in the generator's span.
    #[cfg(feature = "tracing")]
    pub(crate) fn in_span(self, span: &tracing::Span) -> Self {
        self.driver
            .mutex()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .span = Some(span.clone());
        self
    }

    /// The driver, unless a `send`/`throw`/`close` of this coroutine is already running (the
    /// future re-entered its own coroutine, or another thread drives it meanwhile).
    fn driver(&self) -> PyResult<MutexGuard<'_, Driver>> {
        match self.driver.mutex().try_lock() {
            Ok(driver) => Ok(driver),
            Err(TryLockError::Poisoned(poisoned)) => Ok(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => {
                Err(PyValueError::new_err("coroutine already executing"))
            }
        }
    }
}

#[pymethods]
impl Coroutine {
    fn __await__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyAny>> {
        send_slot::install::<Coroutine>(slf.py(), &SEND_SLOT);
        let claimed = &slf.get().claimed;
        if claimed.load(Ordering::Relaxed) {
            slf.get().driver()?.check_not_finished()?;
            return Err(PyRuntimeError::new_err(
                "coroutine is being awaited already",
            ));
        }
        claimed.store(true, Ordering::Relaxed);
        #[cfg(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED)))]
        {
            static WRAPPER_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
            coroutine_wrapper::wrap(slf, &WRAPPER_TYPE)
        }
        #[cfg(not(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED))))]
        Ok(slf.into_any())
    }

    #[getter]
    fn __qualname__(&self) -> &str {
        self.label
            .as_ref()
            .and_then(Label::qualname)
            .unwrap_or("Coroutine")
    }

    #[getter]
    fn __name__(&self) -> &str {
        let qualname = self.__qualname__();
        qualname.rsplit('.').next().unwrap_or(qualname)
    }

    fn __repr__(&self) -> String {
        format!("<pyo3_async coroutine {}>", self.__qualname__())
    }

    /// Whether a `send`, `throw` or `close` of the coroutine runs right now.
    #[getter]
    fn cr_running(&self) -> bool {
        matches!(
            self.driver.mutex().try_lock(),
            Err(TryLockError::WouldBlock)
        )
    }

    /// Whether the coroutine was started and waits on its loop (3.11's `inspect` reads it).
    #[getter]
    fn cr_suspended(&self) -> bool {
        match self.driver.mutex().try_lock() {
            Ok(driver) => driver.is_suspended(),
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().is_suspended(),
            Err(TryLockError::WouldBlock) => false,
        }
    }

    /// What the coroutine awaits: the Python awaitable its future delegates to (a native
    /// coroutine, whose own `cr_await` continues the chain, or an `__await__` iterator), else
    /// the asyncio future or trio coroutine its task is parked on; `None` when it runs, has
    /// not started or has finished.
    #[getter]
    fn cr_await(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let driver = match self.driver.mutex().try_lock() {
            Ok(driver) => driver,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        driver.awaiting().map(|awaiting| awaiting.clone_ref(py))
    }

    /// A frame that stands for the Rust function, suspended at its definition: its code is
    /// named after the function, in its Rust file, so that `Task.get_stack()`,
    /// `asyncio.capture_call_graph()` and trio's `Task.iter_await_frames()` name it. One per
    /// coroutine, made when first asked for; `None` once the coroutine has finished, as a
    /// native coroutine's, and until its first `send` (see `Driver::frame_owner`: trio must
    /// keep wrapping it). It never runs: `f_locals` is empty, `f_back` is `None`.
    #[getter]
    fn cr_frame<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let (name, qualname, file, line) = self.frame_fields();
        let make = || {
            Ok(glue::frame_owner(py)?
                .call1((name, qualname, file, line))?
                .unbind())
        };
        let frame_of = |owner: &Py<PyAny>| owner.bind(py).getattr(pyo3::intern!(py, "cr_frame"));
        let mut driver = match self.driver.mutex().try_lock() {
            Ok(driver) => driver,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // Asked from inside its own `send` (Python code its future runs): a frame of the
            // same function, not kept.
            Err(TryLockError::WouldBlock) => return frame_of(&make()?).map(Some),
        };
        let Some(owner) = driver.frame_owner(make)? else {
            return Ok(None);
        };
        let frame = frame_of(owner)?;
        if !frame.is_none() {
            return Ok(Some(frame));
        }
        // Someone cleared the frame (`frame.clear()` closes its owner): the coroutine still
        // runs, so it gets a new one rather than reading as finished.
        driver.forget_frame_owner();
        match driver.frame_owner(make)? {
            Some(owner) => frame_of(owner).map(Some),
            None => Ok(None),
        }
    }

    /// The code object of `cr_frame`: named after the Rust function, in its file.
    #[getter]
    fn cr_code<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (name, qualname, file, line) = self.frame_fields();
        glue::frame_code(py)?.call1((name, qualname, file, line))
    }

    /// Where the coroutine was created: never recorded for Rust coroutines (CPython records
    /// it only under `sys.set_coroutine_origin_tracking_depth`).
    #[getter]
    fn cr_origin(&self) -> Option<Py<PyAny>> {
        None
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let none = py.None().into_bound(py);
        self.resume(py, |driver| driver.send(py, &none))?
            .into_next()
    }

    /// Resumes the coroutine; the event loop sends `None` (asyncio) or an outcome (trio).
    ///
    /// Python's own `await` and asyncio's tasks skip this method: they resume the coroutine
    /// through its `am_send` slot, which returns the result without raising `StopIteration`.
    fn send(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        send_slot::install::<Coroutine>(py, &SEND_SLOT);
        self.resume(py, |driver| driver.send(py, value))?
            .into_next()
    }

    /// Raises an exception at the suspension point: the cancellation path of asyncio.
    #[pyo3(signature = (typ, val = None, tb = None))]
    fn throw(
        &self,
        py: Python<'_>,
        typ: &Bound<'_, PyAny>,
        val: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let exception = thrown_exception(typ, val, tb)?;
        self.resume(py, |driver| driver.throw(py, exception))?
            .into_next()
    }

    /// Drops the future: its cleanup runs now, synchronously.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.driver()?.finish(py);
        self.claimed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// What the driver holds for its suspension (see `Driver::traverse`). A coroutine being
    /// resumed right now (its lock taken) reports nothing: it is running, so it is reachable.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self.driver.mutex().try_lock() {
            Ok(driver) => driver.traverse(&visit),
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().traverse(&visit),
            Err(TryLockError::WouldBlock) => Ok(()),
        }
    }

    /// The collector found the coroutine's task forgotten: the coroutine finishes as `close()`
    /// finishes it (the future is dropped here, its destructor's panic contained), as CPython
    /// closes a collected native coroutine.
    fn __clear__(&self, py: Python<'_>) {
        if let Ok(mut driver) = self.driver() {
            driver.finish(py);
        }
    }
}

impl Drop for Coroutine {
    /// CPython's `RuntimeWarning: coroutine '...' was never awaited`, for a coroutine that was
    /// never awaited, started or closed. The warning points at the Python code running when
    /// the coroutine is dropped: where a forgotten `await` drops it, the caller's line.
    fn drop(&mut self) {
        if !self.warns_unawaited || *self.claimed.get_mut() {
            return;
        }
        // Only where Python is running (a coroutine built and dropped by Rust code before the
        // interpreter exists, or while it exits, has nobody to tell).
        crate::exit_guard::attach_unless_exiting(|py| warn_unawaited(py, self.__qualname__()));
    }
}

/// Warns as CPython's `_PyErr_WarnUnawaitedCoroutine` does, from a destructor: the exception
/// being raised meanwhile, if any, is kept; a warning turned into an error (`-W error`) is
/// reported as unraisable, since a destructor has no caller to raise to.
#[cold]
fn warn_unawaited(py: Python<'_>, qualname: &str) {
    let raised = PyErr::take(py);
    let category = py.get_type::<pyo3::exceptions::PyRuntimeWarning>();
    let message = std::ffi::CString::new(format!("coroutine '{qualname}' was never awaited"));
    if let Ok(message) = message {
        if let Err(err) = PyErr::warn(py, &category, &message, 1) {
            err.write_unraisable(py, None);
        }
    }
    if let Some(raised) = raised {
        raised.restore(py);
    }
}

/// Whether `Coroutine`'s `am_send` slot is filled in.
static SEND_SLOT: AtomicBool = AtomicBool::new(false);

impl send_slot::SendSlot for Coroutine {
    fn send_value(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<Resumed> {
        let py = slf.py();
        slf.get().resume(py, |driver| driver.send(py, value))
    }
}

impl Resumed {
    /// As a generator's `send` reports it: the result travels in `StopIteration`.
    fn into_next(self) -> PyResult<Py<PyAny>> {
        match self {
            Resumed::Yield(yielded) => Ok(yielded),
            Resumed::Return(output) => Err(PyStopIteration::new_err((output,))),
        }
    }
}

//! A Rust future exported as a Python coroutine object.

mod construction;
mod introspection;
mod resume;
mod slots;
#[cfg(feature = "tracing")]
mod span;
mod unawaited;

use std::borrow::Cow;
use std::future::Future;

use std::sync::Arc;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};

use crate::backend::{Backend, Wakeup};
use crate::rust_to_py::cancel_handle::{CancelHandle, Cancellation};
use crate::rust_to_py::driver::Owner;
use crate::rust_to_py::errors::thrown_exception;
use crate::rust_to_py::label::{Label, MarkedLabel, StaticLabel};
use crate::rust_to_py::pollable::IntoPyFuture;
use crate::rust_to_py::thread_bound::ThreadBound;
use crate::visit::{Traverse, Visit};

/// A Rust future as a Python coroutine object, driven by the Python event loop.
///
/// It has `__await__`, `send`, `throw` and `close`, so it passes `asyncio.iscoroutine` and can
/// be awaited, given to `asyncio.create_task`, `gather`, `run_coroutine_threadsafe`, or to
/// trio and anyio. Each `send` polls the future on the loop thread; when the future is pending
/// the task is suspended on the loop (on asyncio, on a `WakeupFuture`, an 80-byte object that
/// speaks asyncio's future protocol; on trio, in `wait_task_rescheduled`) and the future's
/// [`Waker`](std::task::Waker) — callable from any thread — resumes it. No Rust runtime is
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
// Under the limited API, the coroutine lives in a subclass (`awaited_class`), which the class
// must allow. `extends = PyAny` is the default base said out loud: it keeps PyO3 from deriving
// `IntoPyObject`, which is the crate's own (`slots`: made in the awaited class at once).
#[cfg_attr(
    not(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED))),
    pyclass(module = "pyo3_async", extends = PyAny, frozen, weakref)
)]
#[cfg_attr(
    all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED)),
    pyclass(module = "pyo3_async", extends = PyAny, frozen, weakref, subclass)
)]
pub struct Coroutine {
    /// `__qualname__` (and, after its last dot, `__name__`), for reprs and tracebacks, and
    /// where the Rust function is, for the traceback entry of an exception it raises.
    /// Also carries the coroutine's own two flags, awaited and ran (see [`MarkedLabel`]).
    label: MarkedLabel,
    /// Shared (weakly) with the home of the loop it is bound to, which finishes it if that
    /// loop dies. The future lives in the same allocation, and so do the coroutine's flags
    /// (awaited, closed, quiet: see `DriverFlags`) and its backend, if fixed.
    driver: Owner,
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
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.configure(|driver| driver.set_backend(backend));
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
        let label = Label::with(self.label.take(), Some(qualname.into()), None);
        self.label.set(label);
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
        let label = Label::with(self.label.take(), None, Some((file, line)));
        self.label.set(label);
        self
    }

    /// The attribute macros' `with_qualname` and `with_source`, from a static of the function.
    #[doc(hidden)]
    pub fn __with_label(mut self, label: &'static StaticLabel) -> Self {
        self.label.set(Label::from_static(label));
        self
    }
}

#[pymethods]
impl Coroutine {
    /// Itself, once: a second `await` of a coroutine that another `await` drives raises, as
    /// Python's own `await` does. An async generator's step is awaitable again until it
    /// finished, as a native generator's is: `anext(agen, default)` asks its awaitable for
    /// `__await__` at each resumption.
    fn __await__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyAny>> {
        Self::install_slots(slf.py());
        if !slf.get().label.claim() {
            let driver = slf.get().driver(slf.py())?;
            driver.check_not_finished()?;
            if driver.is_step() {
                drop(driver);
                return Ok(slf.into_any());
            }
            return Err(PyRuntimeError::new_err(
                "coroutine is being awaited already",
            ));
        }
        Self::enter_awaited_class(&slf)?;
        Ok(slf.into_any())
    }

    #[getter]
    fn __qualname__(&self) -> &str {
        self.label.qualname().unwrap_or("Coroutine")
    }

    #[getter]
    fn __name__(&self) -> &str {
        Label::name_of(self.__qualname__())
    }

    fn __repr__(&self) -> String {
        format!("<pyo3_async coroutine {}>", self.__qualname__())
    }

    /// Whether a `send`, `throw` or `close` of the coroutine runs right now.
    #[getter]
    fn cr_running(&self, py: Python<'_>) -> bool {
        self.is_running(py)
    }

    /// Whether the coroutine was started and waits on its loop (3.11's `inspect` reads it).
    #[getter]
    fn cr_suspended(&self, py: Python<'_>) -> bool {
        self.is_suspended(py)
    }

    /// What the coroutine awaits (see `introspection`); `None` when it runs, has not started
    /// or has finished.
    #[getter]
    fn cr_await(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.awaiting(py)
    }

    /// A frame standing for the Rust function (see `introspection`): from the first `send`
    /// until the coroutine finishes.
    #[getter]
    fn cr_frame<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.frame(py)
    }

    /// The code object of `cr_frame`: named after the Rust function, in its file.
    #[getter]
    fn cr_code<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.code(py)
    }

    /// `inspect.getcoroutinestate` reads this from 3.15 on: `CORO_CREATED`, `CORO_RUNNING`,
    /// `CORO_SUSPENDED` or `CORO_CLOSED`.
    #[getter]
    fn cr_state(&self, py: Python<'_>) -> &'static str {
        self.state(py)
    }

    /// Where the coroutine was created: never recorded for Rust coroutines (CPython records
    /// it only under `sys.set_coroutine_origin_tracking_depth`).
    #[getter]
    fn cr_origin(&self) -> Option<Py<PyAny>> {
        None
    }

    /// The coroutine is its own `__await__` iterator, so it is iterable too: `yield from
    /// coroutine.__await__()`, the idiom of `__await__` wrappers, calls `iter()` on it.
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let none = py.None().into_bound(py);
        self.resume(py, |driver, owner| driver.send(py, owner, &none))
            .map_err(|err| *err)?
            .into_next(py)
    }

    /// Resumes the coroutine; the event loop sends `None` (asyncio) or an outcome (trio).
    ///
    /// Python's own `await` and asyncio's tasks skip this method: they resume the coroutine
    /// through its `am_send` slot, which returns the result without raising `StopIteration`.
    fn send(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Self::install_slots(py);
        self.resume(py, |driver, owner| driver.send(py, owner, value))
            .map_err(|err| *err)?
            .into_next(py)
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
        self.resume(py, |driver, owner| driver.throw(py, owner, exception))
            .map_err(|err| *err)?
            .into_next(py)
    }

    /// Drops the future: its cleanup runs now, synchronously.
    ///
    /// A trio task parked on the coroutine is rescheduled, and finds it closed (as a native
    /// coroutine closed under its task is found when its wait ends): trio asks a suspension to
    /// abort only once, so after a refused abort nothing else would ever end the wait. An
    /// asyncio task stays parked, and cancellable: a forgotten task's native coroutine,
    /// finalised by the collector, closes the coroutine it awaits, and that task must not be
    /// scheduled again.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let waiter = self.driver.waiter();
        let mut driver = self.driver(py)?;
        let parked = waiter.take_parked(|wakeup| matches!(wakeup, Wakeup::Trio(_)));
        driver.finish(py, waiter);
        drop(driver);
        self.label.set_closed();
        if let Some(wakeup) = parked {
            wakeup.deliver();
        }
        Ok(())
    }

    /// See [`Traverse`]; once the coroutine class has its slots, it calls that directly.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        Traverse::traverse(self, &visit)
    }

    /// The collector found the coroutine's task forgotten: the coroutine finishes as `close()`
    /// finishes it (the future is dropped here, its destructor's panic contained), as CPython
    /// closes a collected native coroutine.
    fn __clear__(&self, py: Python<'_>) {
        if let Ok(mut driver) = self.driver(py) {
            driver.finish(py, self.driver.waiter());
        }
    }
}

impl Traverse for Coroutine {
    /// What the driver holds for its suspension (see `Driver::traverse`). A coroutine being
    /// resumed right now (its lock taken) reports nothing: it is running, so it is reachable.
    fn traverse<V: Visit>(&self, visit: &V) -> Result<(), V::Error> {
        // SAFETY: the collector runs attached.
        // The coroutine's is the only reference when no waker is alive (the home and trio
        // hold it weakly).
        let unshared = (Arc::strong_count(&self.driver) == 1).then(|| self.driver.waiter());
        match unsafe { self.driver.cell().try_borrow_mut_attached() } {
            Some(driver) => driver.traverse(visit, unshared),
            None => Ok(()),
        }
    }
}

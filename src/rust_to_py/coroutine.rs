//! A Rust future exported as a Python coroutine object.

use std::borrow::Cow;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::task::{Context, Poll, Waker};

use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyTypeError, PyValueError};
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};

use crate::backend::{Backend, Parker};
use crate::first_poll::FirstPoll;
use crate::py_to_rust::delegation::{self, Delegate, Input, Request, Step};
use crate::py_to_rust::{spawn, Completion};
use crate::rust_to_py::cancel_handle::{CancelHandle, Cancellation};
use crate::rust_to_py::pollable::{IntoPyFuture, PyPoll};
use crate::rust_to_py::send_slot;
use crate::waiter::Waiter;

/// A Rust future as a Python coroutine object, driven by the Python event loop.
///
/// It has `__await__`, `send`, `throw` and `close`, so it passes `asyncio.iscoroutine` and can
/// be awaited, given to `asyncio.create_task`, `gather`, `run_coroutine_threadsafe`, or to
/// trio and anyio. Each `send` polls the future on the loop thread; when the future is pending
/// the task is suspended on the loop (an asyncio future, a trio `wait_task_rescheduled`) and
/// the future's [`Waker`] — callable from any thread — resumes it. No Rust runtime is
/// involved: the future may use one (tokio, smol) if it needs it.
///
/// - A future that is ready at the first poll completes without touching the event loop.
/// - `Err(e)` raises `e` with its own type; a panic raises `pyo3_runtime.PanicException` with the
///   panic's message, and the event loop keeps running.
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
    /// `__qualname__` (and, after its last dot, `__name__`), for reprs and tracebacks.
    qualname: Option<Cow<'static, str>>,
    /// Where the Rust function is, for the traceback entry of an exception it raises.
    source: Option<(&'static str, u32)>,
    /// Shared (weakly) with the wake queue of the loop it suspends on, which finishes it if
    /// that loop dies. The future lives in the same allocation.
    driver: Arc<SharedDriver>,
    /// Set once the coroutine was awaited, started or closed: `__await__` then takes the
    /// driver's lock to tell which (an error either way). Keeps the lock off the common path;
    /// a race between threads that both pass it is still caught by the lock in `resume`.
    claimed: AtomicBool,
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
        // Not shared yet (a coroutine is configured before Python sees it): no lock to take.
        match Arc::get_mut(&mut self.driver) {
            Some(driver) => {
                driver
                    .get_mut()
                    .unwrap_or_else(PoisonError::into_inner)
                    .backend = Some(backend)
            }
            None => {
                self.driver
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .backend = Some(backend)
            }
        }
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
        self.qualname = Some(qualname.into());
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
        self.source = Some((file, line));
        self
    }

    /// The one constructor: the driver and the future share one allocation.
    pub(crate) fn from_pollable<P: PyPoll + 'static>(
        future: P,
        cancellation: Option<Arc<Cancellation>>,
        backend: Option<Backend>,
    ) -> Self {
        let driver: Arc<Mutex<Driver<P>>> = Arc::new(Mutex::new(Driver {
            started: false,
            registered: false,
            backend,
            waiter: None,
            parker: None,
            delegate: None,
            cancellation,
            future: FutureCell::new(future),
        }));
        Coroutine {
            qualname: None,
            source: None,
            driver,
            claimed: AtomicBool::new(false),
        }
    }

    /// Gives an exception leaving a named coroutine a traceback entry for the Rust function.
    #[cold]
    fn locate(&self, py: Python<'_>, err: PyErr) -> PyErr {
        let Some(qualname) = &self.qualname else {
            return err;
        };
        let (file, line) = self.source.unwrap_or(("<rust>", 1));
        let name = qualname.rsplit('.').next().unwrap_or(qualname);
        let located = spawn::helper(py, "add_frame").and_then(|add_frame| {
            add_frame.call1((err.value(py), name, qualname.as_ref(), file, line))
        });
        match located {
            Ok(exception) => PyErr::from_value(exception),
            Err(_) => err,
        }
    }

    /// Runs `step` on the driver; an exception leaving it gets the Rust function's frame.
    pub(crate) fn resume(
        &self,
        py: Python<'_>,
        step: impl FnOnce(&mut Driver) -> PyResult<Resumed>,
    ) -> PyResult<Resumed> {
        let mut driver = self.driver()?;
        let resumed = step(&mut driver);
        if driver.started {
            self.claimed.store(true, Ordering::Relaxed);
        }
        if !driver.registered {
            // Suspended on a loop for the first time: that loop's wake queue finishes the
            // coroutine if the loop dies first.
            if let Some(queue) = driver.parker.as_ref().and_then(Parker::wake_queue) {
                queue.register(Arc::downgrade(&self.driver));
                driver.registered = true;
            }
        }
        drop(driver);
        resumed.map_err(|err| self.locate(py, err))
    }

    /// The driver, unless a `send`/`throw`/`close` of this coroutine is already running (the
    /// future re-entered its own coroutine, or another thread drives it meanwhile).
    fn driver(&self) -> PyResult<MutexGuard<'_, Driver>> {
        match self.driver.try_lock() {
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
    fn __await__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        send_slot::install(slf.py());
        let claimed = &slf.get().claimed;
        if claimed.load(Ordering::Relaxed) {
            slf.get().driver()?.check_not_finished()?;
            return Err(PyRuntimeError::new_err(
                "coroutine is being awaited already",
            ));
        }
        claimed.store(true, Ordering::Relaxed);
        Ok(slf)
    }

    #[getter]
    fn __qualname__(&self) -> &str {
        self.qualname.as_deref().unwrap_or("Coroutine")
    }

    #[getter]
    fn __name__(&self) -> &str {
        let qualname = self.__qualname__();
        qualname.rsplit('.').next().unwrap_or(qualname)
    }

    fn __repr__(&self) -> String {
        format!("<pyo3_async coroutine {}>", self.__qualname__())
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
        send_slot::install(py);
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
}

/// How a resumed coroutine leaves `send`/`throw` when it does not raise.
pub(crate) enum Resumed {
    /// Suspended: this object goes to the event loop.
    Yield(Py<PyAny>),
    /// Finished with this result.
    Return(Py<PyAny>),
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

/// A coroutine's driver as its coroutine and its loop's wake queue share it.
pub(crate) type SharedDriver = Mutex<Driver>;

/// The coroutine's mutable state, behind the coroutine's lock, with the future at its end:
/// created for the future's own type `F` and used through `dyn PyPoll`, so the state and the
/// future take one allocation.
pub(crate) struct Driver<F: ?Sized = dyn PyPoll> {
    started: bool,
    /// Whether the wake queue of the loop it suspended on knows this coroutine.
    registered: bool,
    backend: Option<Backend>,
    /// Created at the first poll; lives as long as the coroutine, across suspensions.
    waiter: Option<Arc<Waiter>>,
    /// Created at the first suspension, which binds the coroutine to its task and loop.
    parker: Option<Parker>,
    /// A Python awaitable the future awaits, run inside this coroutine's task.
    delegate: Option<Delegate>,
    cancellation: Option<Arc<Cancellation>>,
    /// Empty once the coroutine has finished (returned, raised, was closed or cancelled).
    future: FutureCell<F>,
}

/// What one poll of the future asks for next.
enum Polled {
    Ready(PyResult<Py<PyAny>>),
    /// Run this awaitable in the task until it finishes, then poll again.
    Delegate(Request),
    /// Suspend the task until the waker is called.
    Park,
}

impl Driver {
    fn check_not_finished(&self) -> PyResult<()> {
        if self.future.is_empty() {
            return Err(already_awaited());
        }
        Ok(())
    }

    pub(crate) fn send(&mut self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Resumed> {
        self.check_not_finished()?;
        if !self.started && !value.is_none() {
            return Err(PyTypeError::new_err(
                "can't send non-None value to a just-started coroutine",
            ));
        }
        self.started = true;
        if self.delegate.is_some() {
            return self.run(py, Some(Input::Send(value.clone())));
        }
        if let Some(parker) = &mut self.parker {
            parker.check_resumption(py)?;
            match parker.resume(py, value) {
                Ok(None) => {}
                Ok(Some(suspended_again)) => return Ok(Resumed::Yield(suspended_again.unbind())),
                Err(exception) => return self.deliver(py, exception),
            }
        }
        self.run(py, None)
    }

    fn throw(&mut self, py: Python<'_>, exception: PyErr) -> PyResult<Resumed> {
        self.check_not_finished()?;
        self.started = true;
        if self.delegate.is_some() {
            // Raised at the delegated await, as Python's `await` does; the future sees the
            // outcome through its `PyFuture` (and its cancel handle, if it has one).
            if let Some(cancellation) = &self.cancellation {
                cancellation.deliver(exception.clone_ref(py));
            }
            return self.run(py, Some(Input::Throw(exception)));
        }
        if let Some(parker) = &mut self.parker {
            parker.abandon(py);
        }
        self.deliver(py, exception)
    }

    /// An exception reached the suspension point: it ends the coroutine, or, when the future
    /// handles cancellation itself, goes to its [`CancelHandle`].
    fn deliver(&mut self, py: Python<'_>, exception: PyErr) -> PyResult<Resumed> {
        match (&self.cancellation, &self.waiter) {
            (Some(cancellation), Some(waiter)) => {
                waiter.set_cancel_delivered();
                cancellation.deliver(exception);
                self.run(py, None)
            }
            _ => {
                self.finish(py);
                Err(exception)
            }
        }
    }

    /// Drives the delegate (starting with `input`) and the future in turn until the task must
    /// suspend or the coroutine finishes. A loop, not recursion: a future may await any number
    /// of ready awaitables in one go.
    fn run(&mut self, py: Python<'_>, mut input: Option<Input<'_>>) -> PyResult<Resumed> {
        loop {
            if let Some(delegate) = self.delegate.take() {
                let input = input
                    .take()
                    .unwrap_or_else(|| Input::Send(py.None().into_bound(py)));
                match delegate.step(py, input) {
                    Step::Yielded(delegate, yielded) => {
                        self.delegate = Some(delegate);
                        return Ok(Resumed::Yield(yielded));
                    }
                    Step::Finished => {}
                }
            }
            match self.poll(py) {
                Polled::Ready(Ok(output)) => return Ok(Resumed::Return(output)),
                Polled::Ready(Err(err)) => return Err(err),
                Polled::Delegate(request) => self.delegate = Delegate::start(py, request),
                Polled::Park => {
                    return self
                        .park(py)
                        .map(Resumed::Yield)
                        .inspect_err(|_| self.finish(py));
                }
            }
        }
    }

    fn poll(&mut self, py: Python<'_>) -> Polled {
        let Some(mut future) = self.future.pinned() else {
            return Polled::Ready(Err(already_awaited()));
        };
        let mut poll = |waker: &Waker| {
            delegation::collect(|| {
                let mut cx = Context::from_waker(waker);
                panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll_py(py, &mut cx)))
            })
        };
        // Each waiting `PyFuture` keeps one clone of the waker: any clone beyond those means
        // something else may wake the future, and a delegated wait could not be interrupted.
        let ((polled, mut requests), wakers_before) = match &self.waiter {
            Some(waiter) => {
                waiter.begin_poll();
                let wakers_before = Arc::strong_count(waiter);
                (poll(&Waker::from(Arc::clone(waiter))), wakers_before)
            }
            None => {
                let (output, waiter) = FirstPoll::run(poll);
                self.waiter = waiter;
                // As if the driver had held the waiter before the poll.
                (output, 1)
            }
        };
        let sole_wake_source = requests.len() == 1
            && self.waiter.as_ref().is_some_and(|waiter| {
                Arc::strong_count(waiter) == wakers_before + 1 && !waiter.woken_during_poll()
            });
        let polled = match polled {
            Ok(Poll::Pending) if sole_wake_source => match requests.pop() {
                Some(request) => return Polled::Delegate(request),
                None => Polled::Park,
            },
            Ok(Poll::Pending) => Polled::Park,
            Ok(Poll::Ready(output)) => {
                self.finish(py);
                Polled::Ready(output)
            }
            Err(payload) => {
                self.finish(py);
                Polled::Ready(Err(panic_exception(payload)))
            }
        };
        if !requests.is_empty() {
            self.schedule(py, requests);
        }
        polled
    }

    /// Runs awaitables that cannot be delegated as tasks of this coroutine's loop.
    fn schedule(&mut self, py: Python<'_>, requests: Vec<Request>) {
        let event_loop = if self.future.is_empty() {
            // The future finished (a `select` picked another branch): nobody waits for these.
            Err(PyRuntimeError::new_err("the coroutine finished"))
        } else {
            self.parker(py).map(|parker| parker.event_loop(py))
        };
        for request in requests {
            let awaitable = request.awaitable.bind(py);
            let started = event_loop
                .as_ref()
                .map_err(|err| err.clone_ref(py))
                .and_then(|event_loop| {
                    let completion = Completion::from_sender(py, request.sender)?;
                    spawn::start(event_loop, awaitable, completion.bind(py), &request.slot)
                });
            if started.is_err() {
                spawn::close_unstarted(awaitable);
            }
        }
    }

    /// The parker, created at the first suspension: detects the backend unless it was given.
    fn parker(&mut self, py: Python<'_>) -> PyResult<&mut Parker> {
        if self.parker.is_none() {
            let waiter = self.waiter.get_or_insert_with(Waiter::new);
            let backend = match self.backend {
                Some(backend) => backend,
                None => Backend::current(py)?,
            };
            self.parker = Some(Parker::new(py, backend, waiter)?);
        }
        match &mut self.parker {
            Some(parker) => Ok(parker),
            None => Err(PyRuntimeError::new_err("no event loop")),
        }
    }

    fn park(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let waiter = Arc::clone(self.waiter.get_or_insert_with(Waiter::new));
        Ok(self.parker(py)?.park(py, &waiter)?.unbind())
    }

    /// Drops the future and everything tied to the current suspension.
    fn finish(&mut self, py: Python<'_>) {
        if let Some(waiter) = &self.waiter {
            waiter.close();
        }
        if let Some(parker) = &mut self.parker {
            parker.abandon(py);
        }
        if let Some(delegate) = self.delegate.take() {
            delegate.close(py);
        }
        self.future.clear();
    }
}

/// The loop `driver`'s coroutine suspended on is dead: its task will never run again, so the
/// coroutine finishes now (called by that loop's wake queue, on the loop thread).
pub(crate) fn abandon(driver: &SharedDriver, py: Python<'_>) {
    // Locked: it is running right now, so its loop is not dead after all.
    if let Ok(mut driver) = driver.try_lock() {
        driver.finish(py);
    }
}

impl<F: ?Sized> Drop for Driver<F> {
    fn drop(&mut self) {
        if let Some(waiter) = &self.waiter {
            waiter.close();
        }
    }
}

/// The future of a coroutine, stored in place, dropped when the coroutine finishes.
struct FutureCell<F: ?Sized> {
    empty: bool,
    future: ManuallyDrop<F>,
}

impl<F> FutureCell<F> {
    fn new(future: F) -> Self {
        FutureCell {
            empty: false,
            future: ManuallyDrop::new(future),
        }
    }
}

impl<F: ?Sized> FutureCell<F> {
    fn is_empty(&self) -> bool {
        self.empty
    }

    /// Drops the future (once), catching a panic of its destructor: it must not unwind into
    /// Python's deallocator, and the coroutine is finished either way.
    fn clear(&mut self) {
        if !std::mem::replace(&mut self.empty, true) {
            // SAFETY: `empty` was false, so the future is initialised, and it is now marked
            // dropped before dropping starts: it is never touched again, even if its
            // destructor panics.
            let drop_future = || unsafe { ManuallyDrop::drop(&mut self.future) };
            let _ = panic::catch_unwind(AssertUnwindSafe(drop_future));
        }
    }
}

impl FutureCell<dyn PyPoll> {
    /// The future, unless the coroutine finished.
    fn pinned(&mut self) -> Option<Pin<&mut dyn PyPoll>> {
        if self.empty {
            return None;
        }
        // SAFETY: the future is initialised (`empty` is false) and never moves: this unsized
        // cell cannot be moved out from behind a reference, it only exists inside the
        // coroutine's `Arc`, and the future is dropped in place (`clear`), never taken out.
        Some(unsafe { Pin::new_unchecked(&mut *self.future) })
    }
}

impl<F: ?Sized> Drop for FutureCell<F> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Python's own error for resuming a coroutine that has finished.
fn already_awaited() -> PyErr {
    PyRuntimeError::new_err("cannot reuse already awaited coroutine")
}

pub(crate) fn panic_exception(payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let message = if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else {
        "Rust future panicked".to_owned()
    };
    PanicException::new_err((message,))
}

/// Builds the exception of `throw(typ[, val[, tb]])`, with the forms generators accept.
pub(crate) fn thrown_exception(
    typ: &Bound<'_, PyAny>,
    val: Option<&Bound<'_, PyAny>>,
    tb: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyErr> {
    let py = typ.py();
    let val = val.filter(|val| !val.is_none());
    let exception = if let Ok(class) = typ.cast::<PyType>() {
        if !class.is_subclass_of::<pyo3::exceptions::PyBaseException>()? {
            return Err(not_an_exception(typ));
        }
        match val {
            Some(val) if val.is_instance(class)? => val.clone(),
            Some(args) => match args.cast::<PyTuple>() {
                Ok(args) => class.call1(args)?,
                Err(_) => class.call1((args,))?,
            },
            None => class.call0()?,
        }
    } else if typ.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        if val.is_some() {
            return Err(PyTypeError::new_err(
                "instance exception may not have a separate value",
            ));
        }
        typ.clone()
    } else {
        return Err(not_an_exception(typ));
    };
    if let Some(tb) = tb.filter(|tb| !tb.is_none()) {
        exception.call_method1(pyo3::intern!(py, "with_traceback"), (tb,))?;
    }
    Ok(PyErr::from_value(exception))
}

fn not_an_exception(typ: &Bound<'_, PyAny>) -> PyErr {
    let name = typ
        .get_type()
        .name()
        .map(|name| name.to_string())
        .unwrap_or_default();
    PyTypeError::new_err(format!(
        "exceptions must be classes or instances deriving from BaseException, not {name}"
    ))
}

//! A Python awaitable or future, awaited from Rust.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::backend::asyncio::running_loop;
use crate::py_to_rust::completion::{Completion, Outcome};
use crate::py_to_rust::delegation::{self, Request};
use crate::py_to_rust::spawn::{check_awaitable, helper};
use crate::py_to_rust::task_slot::TaskSlot;

/// The result of a Python awaitable or future, as a Rust [`Future`]: `Send`, so any executor
/// on any thread can await it.
///
/// - [`PyFuture::new`]: an awaitable awaited inside a [`Coroutine`](crate::Coroutine), run in
///   the coroutine's own task (see below).
/// - [`EventLoop::spawn`](crate::EventLoop::spawn): an awaitable scheduled on a given loop,
///   from any thread.
/// - [`PyFuture::from_future`]: an existing asyncio future or task, or a
///   `concurrent.futures.Future`.
///
/// It resolves with the Python result, or with the Python exception (its type kept; a
/// cancelled task gives its `CancelledError`, see [`is_cancellation`](crate::is_cancellation)).
/// If the Python side can no longer finish — its loop closed, its task was dropped — it
/// resolves with a `RuntimeError` rather than hang. Dropping it before it resolves cancels the
/// Python task, unless it was [detached](PyFuture::detach).
///
/// **Delegation.** A `PyFuture::new` polled by a coroutine's future on the loop thread runs the
/// awaitable in the coroutine's task: the coroutine forwards the event loop's `send` and
/// `throw` to it, exactly as Python's `await` does, so it costs no task and no thread hop, and
/// cancelling the coroutine cancels the awaitable at its suspension point. When the future
/// waits for other things at the same time (several `PyFuture`s in a `join`, a timer in a
/// `select`), the awaitable is scheduled as a task of the coroutine's loop instead, so those
/// other wake-ups are never held up.
///
/// ```
/// use pyo3::prelude::*;
/// use pyo3_async::{Coroutine, PyFuture};
///
/// /// `await twice(some_coroutine())` awaits it inside this coroutine's task.
/// #[pyfunction]
/// fn twice(awaitable: &Bound<'_, PyAny>) -> PyResult<Coroutine> {
///     let future = PyFuture::new(awaitable)?.extract::<i64>();
///     Ok(Coroutine::new(async move { Ok(future.await? * 2) }))
/// }
/// ```
pub struct PyFuture {
    state: State,
    slot: Arc<TaskSlot>,
    cancel_on_drop: bool,
}

enum State {
    /// From `PyFuture::new`: started by the coroutine that first polls it.
    Unstarted(Py<PyAny>),
    Waiting(oneshot::AsyncReceiver<Outcome>),
    Finished,
}

impl PyFuture {
    /// An awaitable (coroutine, [`Coroutine`](crate::Coroutine), object with `__await__`) to
    /// await inside a [`Coroutine`](crate::Coroutine)'s future, which runs it in its own task.
    /// Awaited anywhere else, it fails: use [`EventLoop::spawn`](crate::EventLoop::spawn) to
    /// run Python work from another thread or executor.
    ///
    /// Raises `TypeError` at once for objects that are not awaitable.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::{Coroutine, PyFuture};
    ///
    /// #[pyfunction]
    /// fn forward(awaitable: &Bound<'_, PyAny>) -> PyResult<Coroutine> {
    ///     let future = PyFuture::new(awaitable)?;
    ///     Ok(Coroutine::new(future))
    /// }
    /// ```
    pub fn new(awaitable: &Bound<'_, PyAny>) -> PyResult<Self> {
        check_awaitable(awaitable)?;
        Ok(PyFuture {
            state: State::Unstarted(awaitable.clone().unbind()),
            slot: Arc::new(TaskSlot::default()),
            cancel_on_drop: true,
        })
    }

    /// An asyncio `Future` or `Task` (of any loop, from any thread: the callback is attached on
    /// the loop's thread), or a `concurrent.futures.Future`.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::PyFuture;
    ///
    /// # fn main() -> PyResult<()> {
    /// Python::attach(|py| {
    ///     let future = py.import("concurrent.futures")?.getattr("Future")?.call0()?;
    ///     let awaited = PyFuture::from_future(&future)?;
    ///     future.call_method1("set_result", (5,))?;
    ///     assert_eq!(futures::executor::block_on(awaited)?.extract::<i32>(py)?, 5);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn from_future(future: &Bound<'_, PyAny>) -> PyResult<Self> {
        static CONCURRENT_FUTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        static IS_ASYNCIO_FUTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let py = future.py();
        let (completion, receiver) = Completion::channel(py)?;
        let slot = Arc::new(TaskSlot::default());
        if future.is_instance(CONCURRENT_FUTURE.import(py, "concurrent.futures", "Future")?)? {
            slot.attach_concurrent(py, future);
            future.call_method1(intern!(py, "add_done_callback"), (completion,))?;
        } else if IS_ASYNCIO_FUTURE
            .import(py, "asyncio", "isfuture")?
            .call1((future,))?
            .is_truthy()?
        {
            // asyncio futures are not thread-safe: attach on the loop's thread.
            let event_loop = future.call_method0(intern!(py, "get_loop"))?;
            let attach = helper(py, "attach_asyncio_future")?;
            let handle = slot.handle(py)?;
            if running_loop(py)?.is(&event_loop) {
                attach.call1((&event_loop, future, completion, handle))?;
            } else {
                event_loop.call_method1(
                    intern!(py, "call_soon_threadsafe"),
                    (attach, &event_loop, future, completion, handle),
                )?;
            }
        } else {
            return Err(PyTypeError::new_err(format!(
                "expected an asyncio or concurrent.futures future, got {}",
                future.get_type().name()?
            )));
        }
        Ok(Self::waiting(receiver, slot))
    }

    pub(crate) fn waiting(receiver: oneshot::Receiver<Outcome>, slot: Arc<TaskSlot>) -> Self {
        PyFuture {
            state: State::Waiting(receiver.into_future()),
            slot,
            cancel_on_drop: true,
        }
    }

    /// Lets the Python side run to completion even if this future is dropped.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::EventLoop;
    ///
    /// #[pyfunction]
    /// fn fire_and_forget(py: Python<'_>, awaitable: &Bound<'_, PyAny>) -> PyResult<()> {
    ///     drop(EventLoop::current(py)?.spawn(awaitable)?.detach());
    ///     Ok(())
    /// }
    /// ```
    pub fn detach(mut self) -> Self {
        self.cancel_on_drop = false;
        self
    }

    /// Resolves with the result extracted to `T`.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::{Coroutine, PyFuture};
    ///
    /// #[pyfunction]
    /// fn length(awaitable: &Bound<'_, PyAny>) -> PyResult<Coroutine> {
    ///     let text = PyFuture::new(awaitable)?.extract::<String>();
    ///     Ok(Coroutine::new(async move { Ok(text.await?.len()) }))
    /// }
    /// ```
    pub async fn extract<T>(self) -> PyResult<T>
    where
        T: for<'py> pyo3::conversion::FromPyObjectOwned<'py>,
    {
        let object = self.await?;
        // Possibly on an executor's thread at exit: never wait for a finalising interpreter.
        crate::exit_guard::attach_unless_exiting(|py| {
            object.bind(py).extract::<T>().map_err(Into::into)
        })
        .unwrap_or_else(|| {
            Err(PyRuntimeError::new_err(
                "the Python interpreter is shutting down",
            ))
        })
    }
}

impl Future for PyFuture {
    type Output = PyResult<Py<PyAny>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut receiver = match std::mem::replace(&mut this.state, State::Finished) {
            State::Waiting(receiver) => receiver,
            State::Unstarted(awaitable) => {
                let (sender, receiver) = oneshot::channel();
                let request = Request {
                    awaitable,
                    sender,
                    slot: Arc::clone(&this.slot),
                };
                if delegation::submit(request).is_err() {
                    return Poll::Ready(Err(PyRuntimeError::new_err(
                        "PyFuture::new must be awaited inside a pyo3_async Coroutine; \
                         use EventLoop::spawn to run Python work from another thread or executor",
                    )));
                }
                receiver.into_future()
            }
            State::Finished => {
                return Poll::Ready(Err(PyRuntimeError::new_err(
                    "PyFuture polled after it completed",
                )))
            }
        };
        match Pin::new(&mut receiver).poll(cx) {
            Poll::Pending => {
                this.state = State::Waiting(receiver);
                Poll::Pending
            }
            Poll::Ready(outcome) => Poll::Ready(outcome.unwrap_or_else(|_| {
                Err(PyRuntimeError::new_err(
                    "the Python side ended without a result: its event loop was closed, \
                     its task was dropped, or the interpreter is shutting down",
                ))
            })),
        }
    }
}

impl Drop for PyFuture {
    fn drop(&mut self) {
        if self.cancel_on_drop && matches!(self.state, State::Waiting(_)) {
            self.slot.cancel();
        }
    }
}

/// Whether `err` is a cancellation: `asyncio.CancelledError` (which
/// `concurrent.futures.CancelledError` is) or `trio.Cancelled`.
///
/// ```
/// use pyo3::prelude::*;
/// use pyo3::exceptions::asyncio::CancelledError;
///
/// Python::attach(|py| {
///     assert!(pyo3_async::is_cancellation(py, &CancelledError::new_err(())));
///     assert!(!pyo3_async::is_cancellation(py, &pyo3::exceptions::PyKeyError::new_err(())));
/// });
/// ```
pub fn is_cancellation(py: Python<'_>, err: &PyErr) -> bool {
    if err.is_instance_of::<pyo3::exceptions::asyncio::CancelledError>(py) {
        return true;
    }
    static TRIO_CANCELLED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    // Only a program that imported trio can hold its cancellation; until then, look again
    // each time (a failed initialisation is not cached).
    let cancelled = TRIO_CANCELLED.get_or_try_init(py, || {
        let trio = py.import("sys")?.getattr("modules")?.get_item("trio")?;
        PyResult::Ok(trio.getattr("Cancelled")?.unbind())
    });
    match cancelled {
        Ok(cancelled) => err
            .value(py)
            .is_instance(cancelled.bind(py))
            .unwrap_or(false),
        Err(_) => false,
    }
}

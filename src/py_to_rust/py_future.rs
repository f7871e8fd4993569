//! A Python awaitable or future, awaited from Rust.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;

use crate::backend::asyncio;
use crate::delegation::{self, Request};
use crate::glue;
use crate::task::{Canceller, Completion, Outcome, TaskSlot};

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
/// **Delegation.** A `PyFuture::new` polled by a coroutine's future runs the awaitable in the
/// coroutine's task: the coroutine forwards the event loop's `send` and `throw` to it, exactly
/// as Python's `await` does, so it costs no task and no thread hop, it sees and sets the task's
/// contextvars, and cancelling the coroutine cancels the awaitable at its suspension point.
/// The rule, which depends only on what the program's futures do in the poll that first polls
/// the `PyFuture`: the awaitable is delegated when it is the only thing that poll left the
/// future waiting for. When the future waits for other things at the same time (several
/// `PyFuture`s in a `join`, a timer or channel in a `select`, whether first polled now or
/// earlier), the awaitable is started as a task of the coroutine's loop instead, in a copy of
/// the task's context, so those other wake-ups are never held up.
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
        let py = future.py();
        let (completion, receiver) = Completion::channel(py)?;
        let slot = Arc::new(TaskSlot::default());
        if future.is_instance(glue::concurrent_future(py)?)? {
            let cancel = future.getattr(intern!(py, "cancel"))?.unbind();
            slot.attach(Canceller::Anywhere(Box::new(move |py| {
                cancel.bind(py).call0().map(drop)
            })));
            future.call_method1(intern!(py, "add_done_callback"), (completion,))?;
        } else if glue::isfuture(py)?.call1((future,))?.is_truthy()? {
            // asyncio futures are not thread-safe: attached on the loop's thread.
            asyncio::attach_future(future, completion.bind(py), &slot)?;
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
                    foreign: false,
                };
                match delegation::submit(request, cx.waker()) {
                    Err(_) => {
                        return Poll::Ready(Err(PyRuntimeError::new_err(
                            "PyFuture::new must be awaited inside a pyo3_async Coroutine; \
                             use EventLoop::spawn to run Python work from another thread or \
                             executor",
                        )))
                    }
                    // The coroutine runs it, then polls again, or starts it as a task that
                    // wakes the coroutine when it ends: no waker to register.
                    Ok(false) => {
                        this.state = State::Waiting(receiver.into_future());
                        return Poll::Pending;
                    }
                    Ok(true) => receiver.into_future(),
                }
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
/// `concurrent.futures.CancelledError` is), `trio.Cancelled`, or an exception group holding
/// nothing but those (a trio nursery cancelled while several of its tasks ran — inside
/// `trio.open_tcp_stream`, say — raises its tasks' `Cancelled`s as a group).
///
/// ```
/// use pyo3::prelude::*;
/// use pyo3::exceptions::asyncio::CancelledError;
///
/// Python::attach(|py| {
///     assert!(pyo3_async::is_cancellation(py, &CancelledError::new_err(())));
///     assert!(!pyo3_async::is_cancellation(py, &pyo3::exceptions::PyKeyError::new_err(())));
///     if py.version_info() >= (3, 11) {
///         let group = |inner: &str| {
///             py.eval(&std::ffi::CString::new(format!(
///                 "BaseExceptionGroup('g', [__import__('asyncio').CancelledError(), {inner}])"
///             )).unwrap(), None, None).map(PyErr::from_value)
///         };
///         assert!(pyo3_async::is_cancellation(py, &group("__import__('asyncio').CancelledError()")?));
///         assert!(!pyo3_async::is_cancellation(py, &group("KeyError()")?));
///     }
///     PyResult::Ok(())
/// })
/// # .unwrap();
/// ```
pub fn is_cancellation(py: Python<'_>, err: &PyErr) -> bool {
    is_cancellation_value(err.value(py))
}

fn is_cancellation_value(value: &Bound<'_, PyAny>) -> bool {
    let py = value.py();
    if value.is_instance_of::<pyo3::exceptions::asyncio::CancelledError>() {
        return true;
    }
    if glue::trio_cancelled(py)
        .is_some_and(|cancelled| value.is_instance(cancelled).unwrap_or(false))
    {
        return true;
    }
    // An exception group (builtin from 3.11, the `exceptiongroup` backport on 3.10): its
    // `exceptions`, a non-empty tuple, are all cancellations.
    let Ok(members) = value.getattr(pyo3::intern!(py, "exceptions")) else {
        return false;
    };
    let Ok(members) = members.cast_into::<pyo3::types::PyTuple>() else {
        return false;
    };
    !members.is_empty() && members.iter().all(|member| is_cancellation_value(&member))
}

/// Raises `TypeError` for objects `await` would refuse.
pub(crate) fn check_awaitable(awaitable: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = awaitable.py();
    if glue::isawaitable(py)?.call1((awaitable,))?.is_truthy()? {
        return Ok(());
    }
    Err(PyTypeError::new_err(format!(
        "object {} can't be used in 'await' expression",
        awaitable.get_type().name()?
    )))
}

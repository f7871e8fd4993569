//! Delegation: a [`PyFuture::new`](crate::PyFuture::new) awaited inside one of our coroutines
//! runs the Python awaitable in the coroutine's own task, the way `await` does in Python — no
//! new task, no thread hop, the caller's contextvars and cancel scopes.
//!
//! A `PyFuture::new` polled for the first time files a [`Request`] with the frame that the
//! polling [`Coroutine`](crate::Coroutine) opened around its poll. After the poll, the
//! coroutine applies **the delegation rule**:
//!
//! > The awaitable runs in the coroutine's task when it is the only thing the poll left the
//! > future waiting for: the poll filed exactly one request, with the waker the coroutine lent
//! > it, and neither kept (cloned) nor woke that waker. Otherwise every request of the poll is
//! > started as a task of the coroutine's loop.
//!
//! A delegated wait cannot be interrupted by other wake-ups (trio allows one `reschedule` per
//! wait, and the task waits for the awaitable's own suspension), so anything else that may
//! wake the future — a timer or channel in a `select`, a second awaitable in a `join` — must
//! run beside it. Whether it may is read from the poll itself: each poll lends a waker that no
//! earlier poll's waker equals ([`PollWaker`](crate::waker::PollWaker)), so every wake source
//! that stays pending re-registers, by cloning it, during the poll that files the request. The
//! rule depends on what the program's futures do in that poll, never on timing, threads or
//! reference counts.
//!
//! A `PyFuture::new` polled with another waker inside a coroutine's poll (a combinator with
//! wakers of its own, such as `FuturesUnordered` or `Shared`, or another library's coroutine
//! driven from Python code) is always started as a task, which wakes that waker when it ends.

use std::cell::Cell;
use std::ptr;
use std::sync::Arc;
use std::task::Waker;

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
#[cfg(not(PyPy))]
use pyo3::types::iterator::PySendResult;
use pyo3::types::PyIterator;

use crate::task::{Outcome, TaskSlot};
use crate::visit::Visit;
use crate::waker::PollWaker;

/// A Python awaitable that a `PyFuture` asks the polling coroutine to run.
pub(crate) struct Request {
    pub(crate) awaitable: Py<PyAny>,
    pub(crate) sender: oneshot::Sender<Outcome>,
    pub(crate) slot: Arc<TaskSlot>,
    /// Filed with a waker other than the one the coroutine lent: never delegated, and the
    /// `PyFuture` registered that waker itself.
    pub(crate) foreign: bool,
}

/// The requests of one coroutine poll, and the identity of the waker it lent.
struct Frame {
    requests: Vec<Request>,
    lent: *const (),
}

thread_local! {
    /// The frame of the innermost coroutine poll in progress on this thread (coroutines
    /// nest when one delegates to another), or null outside any.
    static FRAME: Cell<*mut Frame> = const { Cell::new(ptr::null_mut()) };
}

/// Runs `poll` (which polls with the waker whose identity is `lent`) in a new frame and
/// returns the requests filed during it.
pub(crate) fn collect<R>(lent: *const (), poll: impl FnOnce() -> R) -> (R, Vec<Request>) {
    /// Reinstates the enclosing frame, even if `poll` unwinds.
    struct Enclosing(*mut Frame);
    impl Drop for Enclosing {
        fn drop(&mut self) {
            FRAME.with(|frame| frame.set(self.0));
        }
    }
    let mut frame = Frame {
        requests: Vec::new(),
        lent,
    };
    let enclosing = Enclosing(FRAME.with(|current| current.replace(&mut frame)));
    let output = poll();
    drop(enclosing);
    (output, frame.requests)
}

/// Files a request, polled with `waker`, with the innermost coroutine poll; gives it back
/// outside of any. Returns whether it was filed as foreign (see [`Request::foreign`]).
pub(crate) fn submit(mut request: Request, waker: &Waker) -> Result<bool, Request> {
    let frame = FRAME.with(Cell::get);
    if frame.is_null() {
        return Err(request);
    }
    // SAFETY: a non-null frame points to the `frame` of a `collect` running further up this
    // thread's stack (`FRAME` is thread-local and reset before `collect` returns or unwinds),
    // which does not touch it until `poll` returns: this is the only access.
    let frame = unsafe { &mut *frame };
    request.foreign = !PollWaker::is(waker, frame.lent);
    let foreign = request.foreign;
    frame.requests.push(request);
    Ok(foreign)
}

/// What the event loop passes into the task: `send(value)` or `throw(exception)`.
pub(crate) enum Input<'py> {
    Send(Bound<'py, PyAny>),
    Throw(PyErr),
}

/// The result of forwarding one input to a [`Delegate`].
pub(crate) enum Step {
    /// The awaitable suspended: this object goes to the event loop.
    Yielded(Delegate, Py<PyAny>),
    /// The awaitable finished; the `PyFuture` has its outcome.
    Finished,
}

/// What an `__await__()` returned, as the iterator it must be (the error Python's own `await`
/// gives otherwise).
pub(crate) fn await_iterator(returned: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyIterator>> {
    returned.cast_into::<PyIterator>().map_err(|err| {
        PyTypeError::new_err(format!(
            "__await__() returned non-iterator of type {}",
            err.into_inner()
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })
}

/// An awaitable being driven inside the coroutine's task.
pub(crate) struct Delegate {
    /// What a native `await` would drive: the `__await__()` iterator, or a native coroutine
    /// itself (so that `cr_await` continues into its frames, as it does for `async def`).
    iterator: Py<PyIterator>,
    sender: oneshot::Sender<Outcome>,
}

impl Delegate {
    /// `awaitable.__await__()` (a native coroutine as it is); a failure goes to the
    /// `PyFuture`.
    pub(crate) fn start(py: Python<'_>, request: Request) -> Option<Delegate> {
        let awaitable = request.awaitable.into_bound(py);
        let iterator = match is_native_coroutine(&awaitable) {
            Err(refused) => Err(refused),
            Ok(native) => match native_coroutine(awaitable, native) {
                Ok(coroutine) => Ok(coroutine),
                Err(awaitable) => awaitable
                    .call_method0(intern!(py, "__await__"))
                    .and_then(await_iterator),
            },
        };
        match iterator {
            Ok(iterator) => Some(Delegate {
                iterator: iterator.unbind(),
                sender: request.sender,
            }),
            Err(err) => {
                let _ = request.sender.send(Err(err));
                None
            }
        }
    }

    /// Forwards `input` to the awaitable.
    pub(crate) fn step(self, py: Python<'_>, input: Input<'_>) -> Step {
        let iterator = self.iterator.bind(py);
        let sent = match input {
            Input::Send(value) => send(iterator, &value),
            Input::Throw(exception) => match iterator.getattr(intern!(py, "throw")) {
                Ok(throw) => throw.call1((exception.value(py),)).map(PySendResult::Next),
                // As `yield from` does: without `throw`, the exception is raised here.
                Err(_) => Err(exception),
            },
        };
        let outcome = match sent {
            Ok(PySendResult::Next(yielded)) => return Step::Yielded(self, yielded.unbind()),
            Ok(PySendResult::Return(value)) => Ok(value.unbind()),
            Err(err) if err.is_instance_of::<pyo3::exceptions::PyStopIteration>(py) => {
                // A `throw` that made the awaitable return.
                err.value(py)
                    .getattr(intern!(py, "value"))
                    .map(Bound::unbind)
            }
            Err(err) => Err(err),
        };
        let _ = self.sender.send(outcome);
        Step::Finished
    }

    /// The awaitable's iterator, for the garbage collector: a native `await` holds it the same
    /// way (a coroutine's frame holds what it awaits).
    pub(crate) fn traverse<V: Visit>(&self, visit: &V) -> Result<(), V::Error> {
        visit.visit(self.iterator.as_any())
    }

    /// What the coroutine awaits, as a native coroutine's `cr_await` shows it.
    pub(crate) fn awaiting(&self) -> &Py<PyAny> {
        self.iterator.as_any()
    }

    /// Abandons the awaitable (its coroutine is closed), when the coroutine itself ends.
    pub(crate) fn close(self, py: Python<'_>) {
        let _ = self.iterator.bind(py).call_method0(intern!(py, "close"));
    }
}

/// Whether `awaitable` is an `async def` coroutine; refused, as Python's `await` refuses it,
/// when it is suspended in an await of its own: another task drives it, and driving it here
/// too would hand both tasks its wake-ups (and cancel the other task with this one).
fn is_native_coroutine(awaitable: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = awaitable.py();
    let native = crate::glue::coroutine_type(py).is_ok_and(|t| awaitable.get_type().is(t));
    if native && !awaitable.getattr(intern!(py, "cr_await"))?.is_none() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "coroutine is being awaited already",
        ));
    }
    Ok(native)
}

/// A native coroutine is driven as it is, as `await` drives it (its `__await__()` would be
/// CPython's `coroutine_wrapper`, which hides the coroutine from `cr_await`'s readers).
#[cfg(not(PyPy))]
fn native_coroutine(
    awaitable: Bound<'_, PyAny>,
    native: bool,
) -> Result<Bound<'_, PyIterator>, Bound<'_, PyAny>> {
    if !native {
        return Err(awaitable);
    }
    // SAFETY: only `PyIter_Send` (`send` below), `throw` and `close` are used on a delegate's
    // iterator, and a coroutine has all three (`am_send` for the first), although it is no
    // iterator (`tp_iternext`).
    Ok(unsafe { awaitable.cast_into_unchecked::<PyIterator>() })
}

/// PyPy's sends go through `__next__`, which a coroutine lacks: its `__await__()` is used.
#[cfg(PyPy)]
fn native_coroutine(
    awaitable: Bound<'_, PyAny>,
    _native: bool,
) -> Result<Bound<'_, PyIterator>, Bound<'_, PyAny>> {
    Err(awaitable)
}

/// `iterator.send(value)`: CPython's `PyIter_Send` (no `StopIteration` raised to be caught).
#[cfg(not(PyPy))]
fn send<'py>(
    iterator: &Bound<'py, pyo3::types::PyIterator>,
    value: &Bound<'py, PyAny>,
) -> PyResult<PySendResult<'py>> {
    iterator.send(value)
}

/// What a send gave: PyO3's `PySendResult`, which PyPy lacks with `PyIter_Send`.
#[cfg(PyPy)]
enum PySendResult<'py> {
    Next(Bound<'py, PyAny>),
    Return(Bound<'py, PyAny>),
}

/// `iterator.send(value)` through Python's protocol, as `yield from` does it: `__next__` for
/// `None` (so a plain iterator works), `send` otherwise; `StopIteration` is the return.
#[cfg(PyPy)]
fn send<'py>(
    iterator: &Bound<'py, pyo3::types::PyIterator>,
    value: &Bound<'py, PyAny>,
) -> PyResult<PySendResult<'py>> {
    let py = iterator.py();
    let stepped = if value.is_none() {
        iterator.call_method0(intern!(py, "__next__"))
    } else {
        iterator.call_method1(intern!(py, "send"), (value,))
    };
    match stepped {
        Ok(yielded) => Ok(PySendResult::Next(yielded)),
        Err(err) if err.is_instance_of::<pyo3::exceptions::PyStopIteration>(py) => err
            .value(py)
            .getattr(intern!(py, "value"))
            .map(PySendResult::Return),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(py: Python<'_>) -> Request {
        let (sender, _receiver) = oneshot::channel();
        Request {
            awaitable: py.None(),
            sender,
            slot: Arc::new(TaskSlot::default()),
            foreign: false,
        }
    }

    fn noop() -> &'static Waker {
        futures::task::noop_waker_ref()
    }

    #[test]
    fn requests_go_to_the_innermost_frame_and_nowhere_outside() {
        Python::attach(|py| {
            assert!(
                submit(request(py), noop()).is_err(),
                "no coroutine is polling"
            );
            let ((), outer) = collect(ptr::null(), || {
                assert!(submit(request(py), noop()).is_ok());
                let ((), inner) = collect(ptr::null(), || {
                    assert!(submit(request(py), noop()).is_ok());
                    assert!(submit(request(py), noop()).is_ok());
                });
                assert_eq!(inner.len(), 2);
            });
            assert_eq!(outer.len(), 1);
            assert!(submit(request(py), noop()).is_err(), "frames are gone");
        });
    }

    #[test]
    fn a_panicking_poll_leaves_no_frame_behind() {
        Python::attach(|py| {
            let unwound =
                std::panic::catch_unwind(|| collect(ptr::null(), || panic!("poll panicked")));
            assert!(unwound.is_err());
            assert!(submit(request(py), noop()).is_err());
        });
    }
}

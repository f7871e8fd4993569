//! The callback that hands a Python result to the Rust side.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Waker;

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PySet;
use pyo3::{PyTraverseError, PyVisit};

use crate::census;
use crate::home::{Dependent, Home};

/// What a [`PyFuture`](crate::PyFuture) resolves with.
pub(crate) type Outcome = PyResult<Py<PyAny>>;

/// A Python callable completing a one-shot channel: as a done-callback of an asyncio or
/// `concurrent.futures` future (`completion(future)`), or from glue code
/// (`set_result` / `set_exception`).
///
/// It owns the sender: if Python drops it without calling it (a closed loop dropping its
/// callbacks, a task collected while pending), the receiver learns that no result will come.
/// Registered with the home of the loop that runs the work, it also fails at once when that
/// loop dies, without waiting for the garbage collector.
#[pyclass(frozen)]
pub(crate) struct Completion {
    inner: Arc<Inner>,
    /// A set that glue code adds the future to, which the future leaves when it is done (the
    /// tasks a loop must cancel when it shuts down). A set method, not a second done-callback:
    /// that would cost each task a callback list.
    tracked_in: OnceLock<Py<PySet>>,
}

struct Inner {
    sender: Mutex<Option<oneshot::Sender<Outcome>>>,
    /// Woken after the outcome is sent, for a receiver that is not polled yet (a request a
    /// coroutine scheduled as a task instead of running it).
    then_wake: Option<Waker>,
}

impl Completion {
    pub(crate) fn channel(
        py: Python<'_>,
    ) -> PyResult<(Py<Completion>, oneshot::Receiver<Outcome>)> {
        let (sender, receiver) = oneshot::channel();
        Ok((Self::new(py, sender, None)?, receiver))
    }

    pub(crate) fn new(
        py: Python<'_>,
        sender: oneshot::Sender<Outcome>,
        then_wake: Option<Waker>,
    ) -> PyResult<Py<Completion>> {
        census::PYTHON_TASKS.add();
        Py::new(
            py,
            Completion {
                inner: Arc::new(Inner {
                    sender: Mutex::new(Some(sender)),
                    then_wake,
                }),
                tracked_in: OnceLock::new(),
            },
        )
    }

    /// Sends the first outcome; later ones are ignored.
    pub(crate) fn complete(&self, outcome: Outcome) {
        self.inner.complete(outcome);
    }

    /// Removes the future from `set` when it is done (glue code adds it).
    pub(crate) fn track_in(&self, set: Bound<'_, PySet>) {
        let _ = self.tracked_in.set(set.unbind());
    }

    /// Fails when `home`'s loop dies before the work finishes.
    pub(crate) fn depend_on(&self, py: Python<'_>, home: &Home) {
        home.depend(py, Arc::<Inner>::downgrade(&self.inner));
    }
}

impl Inner {
    fn complete(&self, outcome: Outcome) {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(sender) = sender else { return };
        census::PYTHON_TASKS.remove();
        // The receiver is gone when the Rust side stopped waiting: nothing to do. The waker
        // runs after the lock is released.
        if sender.send(outcome).is_ok() {
            if let Some(waker) = &self.then_wake {
                waker.wake_by_ref();
            }
        }
    }
}

impl Dependent for Inner {
    fn loop_died(&self, _py: Python<'_>) {
        self.complete(Err(PyRuntimeError::new_err(
            "the event loop closed (or the trio run ended) before the Python work finished",
        )));
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropped without an outcome: the receiver sees the closed channel; a scheduled
        // request's coroutine must still be woken to see it.
        let unsent = self
            .sender
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(sender) = unsent {
            census::PYTHON_TASKS.remove();
            drop(sender);
            if let Some(waker) = &self.then_wake {
                waker.wake_by_ref();
            }
        }
    }
}

#[pymethods]
impl Completion {
    /// The set of tracked tasks holds the task, which holds this callback: when the loop's
    /// shutdown record is dropped with tasks pending, that cycle is the collector's to break.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(self.tracked_in.get())
    }

    fn __call__(&self, future: &Bound<'_, PyAny>) {
        self.complete(outcome_of(future));
        if let Some(set) = self.tracked_in.get() {
            // Hashing a future cannot fail.
            let _ = set.bind(future.py()).discard(future);
        }
    }

    fn set_result(&self, result: Py<PyAny>) {
        self.complete(Ok(result));
    }

    fn set_exception(&self, exception: &Bound<'_, PyAny>) {
        self.complete(Err(PyErr::from_value(exception.clone())));
    }

    /// Rust dropped the `PyFuture` before the work started: nobody listens.
    pub(crate) fn cancelled_before_start(&self) {
        self.complete(Err(pyo3::exceptions::asyncio::CancelledError::new_err(())));
    }
}

/// The outcome of a finished asyncio or `concurrent.futures` future.
fn outcome_of(future: &Bound<'_, PyAny>) -> Outcome {
    let py = future.py();
    // `exception()` hands a failure over as an object; fetching it as a raised exception
    // would make PyO3 resume a `PanicException` as a panic here. It raises only
    // `CancelledError`, which is the outcome of a cancelled future.
    let exception = future.call_method0(intern!(py, "exception"))?;
    if exception.is_none() {
        Ok(future.call_method0(intern!(py, "result"))?.unbind())
    } else {
        Err(PyErr::from_value(exception))
    }
}

//! The done-callback that hands a Python result to the Rust side.

use std::sync::{Mutex, PoisonError};

use pyo3::intern;
use pyo3::prelude::*;

/// What a [`PyFuture`](crate::PyFuture) resolves with.
pub(crate) type Outcome = PyResult<Py<PyAny>>;

/// A Python callable completing a one-shot channel: as a done-callback of an asyncio or
/// `concurrent.futures` future (`completion(future)`), or from glue code
/// (`set_result` / `set_exception`).
///
/// It owns the sender: if Python drops it without calling it (a closed loop dropping its
/// callbacks, a task collected while pending), the receiver learns that no result will come.
#[pyclass(frozen)]
pub(crate) struct Completion {
    sender: Mutex<Option<oneshot::Sender<Outcome>>>,
}

impl Completion {
    pub(crate) fn channel(
        py: Python<'_>,
    ) -> PyResult<(Py<Completion>, oneshot::Receiver<Outcome>)> {
        let (sender, receiver) = oneshot::channel();
        Ok((Self::from_sender(py, sender)?, receiver))
    }

    pub(crate) fn from_sender(
        py: Python<'_>,
        sender: oneshot::Sender<Outcome>,
    ) -> PyResult<Py<Completion>> {
        Py::new(
            py,
            Completion {
                sender: Mutex::new(Some(sender)),
            },
        )
    }

    /// Sends the first outcome; later ones are ignored. The receiver's waker runs after the
    /// lock is released.
    pub(crate) fn complete(&self, outcome: Outcome) {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(sender) = sender {
            // The receiver is gone when the Rust side stopped waiting: nothing to do.
            let _ = sender.send(outcome);
        }
    }
}

#[pymethods]
impl Completion {
    fn __call__(&self, future: &Bound<'_, PyAny>) {
        self.complete(outcome_of(future));
    }

    fn set_result(&self, result: Py<PyAny>) {
        self.complete(Ok(result));
    }

    fn set_exception(&self, exception: &Bound<'_, PyAny>) {
        self.complete(Err(PyErr::from_value(exception.clone())));
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

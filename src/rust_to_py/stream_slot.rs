//! The stream of an [`AsyncGenerator`](crate::AsyncGenerator), in the generator itself, and
//! whether one of its `__anext__` steps runs.

use std::pin::Pin;
use std::task::{Context, Poll};

use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;

use crate::gil_cell::{GilCell, GilGuard};
use crate::rust_to_py::errors::stream_item_error;
use crate::rust_to_py::pollable::PyPollNext;

/// The stream and whether an `__anext__` runs, moved only by attached threads (the steps'
/// polls, `aclose`), hence a [`GilCell`]: no atomic instruction per item.
pub(crate) struct StreamSlot(GilCell<SlotState>);

/// The stream as the generator holds it.
pub(crate) type BoxedStream = Pin<Box<dyn PyPollNext>>;

pub(crate) struct SlotState {
    /// `None` once the stream has ended.
    pub(crate) stream: Option<BoxedStream>,
    /// An `__anext__` awaitable has started and not finished: Python forbids a second one.
    pub(crate) running: bool,
}

impl StreamSlot {
    pub(crate) fn new(stream: BoxedStream) -> Self {
        StreamSlot(GilCell::new(SlotState {
            stream: Some(stream),
            running: false,
        }))
    }

    /// The state; `None` while it is borrowed further up this thread's stack (the stream's
    /// own poll or destructor reaching back into its generator).
    pub(crate) fn borrow(&self, py: Python<'_>) -> Option<GilGuard<'_, SlotState>> {
        self.0.try_borrow_mut(py)
    }

    /// Drops the stream (outside the borrow: its destructor may do anything).
    pub(crate) fn close(&self, py: Python<'_>) {
        let finished = self.borrow(py).and_then(|mut state| state.stream.take());
        drop_contained(finished);
    }
}

impl SlotState {
    /// Polls for the next item; the stream's end (or error) ends it, and the ended stream is
    /// handed back to be dropped outside the borrow.
    pub(crate) fn poll_next(
        &mut self,
        py: Python<'_>,
        cx: &mut Context<'_>,
    ) -> (Poll<PyResult<Py<PyAny>>>, Option<BoxedStream>) {
        let Some(active) = self.stream.as_mut() else {
            return (Poll::Ready(Err(PyStopAsyncIteration::new_err(()))), None);
        };
        let ended = match active.as_mut().poll_next_py(py, cx) {
            Poll::Pending => return (Poll::Pending, None),
            Poll::Ready(Some(Ok(item))) => return (Poll::Ready(Ok(item)), None),
            Poll::Ready(Some(Err(err))) => stream_item_error(py, err),
            Poll::Ready(None) => PyStopAsyncIteration::new_err(()),
        };
        (Poll::Ready(Err(ended)), self.stream.take())
    }
}

impl Drop for StreamSlot {
    /// The generator is gone (its steps keep it alive): the stream, if it never ended.
    fn drop(&mut self) {
        drop_contained(self.0.get_mut().stream.take());
    }
}

/// Drops a finished stream, once, keeping a panic of its destructor in Rust: as for a
/// future's, it must not reach Python (`aclose()`, the generator's end, or its collection).
pub(crate) fn drop_contained(stream: Option<BoxedStream>) {
    if let Some(stream) = stream {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(stream)));
    }
}

//! The stream of an [`AsyncGenerator`](crate::AsyncGenerator), in the generator itself,
//! whether one of its `__anext__` steps runs, and what Python's tools read of it (`ag_state`,
//! the `ag_frame` owner).

use std::pin::Pin;
use std::task::{Context, Poll};

use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;

use crate::gil_cell::{GilCell, GilGuard};
use crate::rust_to_py::errors::stream_item_error;
use crate::rust_to_py::pollable::{PyOutcome, PyPollNext};

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
    /// The stream was polled once: the generator is no longer "created".
    started: bool,
    /// The suspended coroutine whose frame is `ag_frame`, made when first asked for; gone
    /// with the stream.
    frame_owner: Option<Py<PyAny>>,
}

/// `ag_state`: what `inspect.getasyncgenstate` reports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum GeneratorState {
    Created,
    /// Its stream is being polled (or dropped) right now, further up this thread's stack.
    Running,
    Suspended,
    Closed,
}

impl GeneratorState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            GeneratorState::Created => "AGEN_CREATED",
            GeneratorState::Running => "AGEN_RUNNING",
            GeneratorState::Suspended => "AGEN_SUSPENDED",
            GeneratorState::Closed => "AGEN_CLOSED",
        }
    }
}

impl StreamSlot {
    pub(crate) fn new(stream: BoxedStream) -> Self {
        StreamSlot(GilCell::new(SlotState {
            stream: Some(stream),
            running: false,
            started: false,
            frame_owner: None,
        }))
    }

    pub(crate) fn state(&self, py: Python<'_>) -> GeneratorState {
        match self.borrow(py) {
            None => GeneratorState::Running,
            Some(state) if state.stream.is_none() => GeneratorState::Closed,
            Some(state) if state.started => GeneratorState::Suspended,
            Some(_) => GeneratorState::Created,
        }
    }

    /// The `ag_frame` owner: the kept one, else one made by `make` (outside the borrow: it runs
    /// Python code) and kept unless the generator closed or ran meanwhile. `None` once closed.
    pub(crate) fn frame_owner(
        &self,
        py: Python<'_>,
        make: impl FnOnce() -> PyResult<Py<PyAny>>,
    ) -> PyResult<Option<Py<PyAny>>> {
        match self.borrow(py) {
            Some(state) if state.stream.is_none() => return Ok(None),
            Some(state) => {
                if let Some(owner) = &state.frame_owner {
                    return Ok(Some(owner.clone_ref(py)));
                }
            }
            // Asked from inside its own poll: a frame of the same function, not kept.
            None => return make().map(Some),
        }
        let owner = make()?;
        if let Some(mut state) = self.borrow(py) {
            if state.stream.is_some() && state.frame_owner.is_none() {
                state.frame_owner = Some(owner.clone_ref(py));
            }
        }
        Ok(Some(owner))
    }

    /// Forgets a frame owner whose frame was cleared (`frame.clear()` closes it).
    pub(crate) fn forget_frame_owner(&self, py: Python<'_>) {
        let forgotten = self
            .borrow(py)
            .and_then(|mut state| state.frame_owner.take());
        drop(forgotten);
    }

    /// The state; `None` while it is borrowed further up this thread's stack (the stream's
    /// own poll or destructor reaching back into its generator).
    pub(crate) fn borrow(&self, py: Python<'_>) -> Option<GilGuard<'_, SlotState>> {
        self.0.try_borrow_mut(py)
    }

    /// Drops the stream (outside the borrow: its destructor may do anything).
    pub(crate) fn close(&self, py: Python<'_>) {
        let (finished, owner) = match self.borrow(py) {
            Some(mut state) => (state.stream.take(), state.frame_owner.take()),
            None => (None, None),
        };
        drop(owner);
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
    ) -> (Poll<PyOutcome>, Option<BoxedStream>) {
        let Some(active) = self.stream.as_mut() else {
            return (stop_async_iteration(), None);
        };
        self.started = true;
        match active.as_mut().poll_next_py(py, cx) {
            Poll::Pending => (Poll::Pending, None),
            Poll::Ready(Some(Ok(item))) => (Poll::Ready(Ok(item)), None),
            Poll::Ready(Some(Err(err))) => (
                Poll::Ready(Err(Box::new(stream_item_error(py, *err)))),
                self.stream.take(),
            ),
            Poll::Ready(None) => (stop_async_iteration(), self.stream.take()),
        }
    }
}

impl Drop for StreamSlot {
    /// The generator is gone (its steps keep it alive): the stream, if it never ended.
    fn drop(&mut self) {
        drop_contained(self.0.get_mut().stream.take());
    }
}

/// The end of the iteration, as a step's outcome.
#[cold]
fn stop_async_iteration() -> Poll<PyOutcome> {
    Poll::Ready(Err(Box::new(PyStopAsyncIteration::new_err(()))))
}

/// Drops a finished stream, once, keeping a panic of its destructor in Rust: as for a
/// future's, it must not reach Python (`aclose()`, the generator's end, or its collection).
pub(crate) fn drop_contained(stream: Option<BoxedStream>) {
    if let Some(stream) = stream {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(stream)));
    }
}

//! Running a Python awaitable as a task of a loop, and cancelling it: one owner.
//!
//! Every way Rust runs Python work as a task — `EventLoop::spawn` and `spawn_with` (whose
//! factory already ran in the job's context), and an awaitable that a coroutine cannot drive
//! itself (see `delegation`) — makes a [`Launch`] on the loop's thread and starts it there
//! with the loop's backend (`backend::launch`). A launch holds what a started job needs: the
//! loop's home, the awaitable, the `contextvars` context it runs in, the [`Completion`] that
//! delivers its outcome to Rust, and the [`TaskSlot`] through which Rust cancels it. Before
//! it, these five travelled through four signatures, and asyncio's canceller went Rust →
//! Python → Rust through a function pointer.
//!
//! | stage | what holds | how it ends |
//! |---|---|---|
//! | made | the launch (attached, on the loop's thread) | `start` |
//! | refused: the `PyFuture` was dropped already, the loop died or shuts down, the framework refused | — | the awaitable is closed unstarted (no "never awaited" warning); the completion resolves with the cancellation or the error |
//! | started | the loop's task; the slot holds its canceller (asyncio: `task.cancel()` through the home; trio: its cancel scope) | the task finishes: the completion resolves, once |
//!
//! Invariants: an awaitable handed to a launch is either started as a task or closed; a
//! completion resolves exactly once (its first outcome wins); a cancellation that Rust asks
//! for at any stage reaches the task (the slot cancels a canceller attached after the request
//! at once).

use std::sync::Arc;

use pyo3::prelude::*;

use crate::glue;
use crate::home::Home;
use crate::task::completion::Completion;
use crate::task::task_slot::TaskSlot;

/// A Python awaitable about to run as a task of a loop; see the module docs. The backend
/// layer starts it (`Launch::start`, with the loop's backend).
pub(crate) struct Launch<'py> {
    pub(crate) home: Arc<Home>,
    pub(crate) awaitable: Bound<'py, PyAny>,
    pub(crate) context: Bound<'py, PyAny>,
    pub(crate) completion: Bound<'py, Completion>,
    pub(crate) slot: Arc<TaskSlot>,
}

impl Launch<'_> {
    /// Closes the awaitable, which will never run (no "never awaited" warning).
    pub(crate) fn close_unstarted(&self) {
        let py = self.awaitable.py();
        let _ = glue::close_unstarted(py).and_then(|close| close.call1((&self.awaitable,)));
    }
}

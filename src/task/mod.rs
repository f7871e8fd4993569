//! The Python side of a [`PyFuture`](crate::PyFuture): the callback that hands a result to
//! Rust ([`Completion`]) and the slot through which Rust cancels the Python work
//! ([`TaskSlot`]). Backend-neutral: the backends fill them in.

mod completion;
mod launch;
mod task_slot;

pub(crate) use completion::{Completion, Outcome};
pub(crate) use launch::Launch;
pub(crate) use task_slot::{Canceller, TaskSlot};

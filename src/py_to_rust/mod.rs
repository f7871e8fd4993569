//! Python → Rust: Python awaitables, futures and async iterators as Rust futures and streams.

mod completion;
pub(crate) mod delegation;
mod py_async_iter;
mod py_future;
pub(crate) mod spawn;
mod task_slot;

pub(crate) use completion::Completion;
pub use py_async_iter::PyAsyncIter;
pub use py_future::{is_cancellation, PyFuture};
pub(crate) use task_slot::TaskSlot;

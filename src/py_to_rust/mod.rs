//! Python → Rust: Python awaitables, futures and async iterators as Rust futures and streams,
//! and the loops that run them.

mod async_iter_channel;
mod context;
mod event_loop;
mod py_async_iter;
mod py_future;

pub use context::PyContext;
pub use event_loop::EventLoop;
pub use py_async_iter::PyAsyncIter;
pub use py_future::{is_cancellation, PyFuture};

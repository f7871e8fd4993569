//! Rust futures and Python coroutines awaiting each other, with no glue runtime in between.
//!
//! Python's event loops and Rust's executors both wake work through callbacks: asyncio
//! futures have done-callbacks, trio has `reschedule`, Rust has [`Waker`](std::task::Waker).
//! This crate joins them directly, on asyncio, uvloop, trio and anyio.
//!
//! **Rust → Python**: [`Coroutine`] turns a Rust future into a Python coroutine object and
//! [`AsyncGenerator`] turns a Rust stream into a Python async generator. The Python event loop
//! drives them; no Rust runtime is required unless the future itself needs one.
//!
//! ```
//! use pyo3::prelude::*;
//! use pyo3_async::{AsyncGenerator, Coroutine};
//!
//! #[pyfunction]
//! fn answer() -> Coroutine {
//!     Coroutine::new(async { PyResult::Ok(42) })
//! }
//!
//! #[pyfunction]
//! fn count(until: u32) -> AsyncGenerator {
//!     AsyncGenerator::new(futures::stream::iter((0..until).map(PyResult::Ok)))
//! }
//!
//! #[pymodule]
//! fn example(m: &Bound<'_, PyModule>) -> PyResult<()> {
//!     m.add_function(wrap_pyfunction!(answer, m)?)?;
//!     m.add_function(wrap_pyfunction!(count, m)?)?;
//!     Ok(())
//! }
//! ```

mod backend;
mod event_loop;
pub mod py_to_rust;
pub mod rust_to_py;
mod waiter;
mod wake_queue;

pub use backend::Backend;
pub use event_loop::EventLoop;
pub use py_to_rust::{is_cancellation, PyAsyncIter, PyFuture};
pub use rust_to_py::{AllowThreads, AsyncGenerator, CancelHandle, Coroutine};

/// The README's examples, compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

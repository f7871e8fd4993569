//! The locks of the pure-Rust state machines (the waker's [`Waiter`] and the
//! home's job queue): std's, or loom's when the crate is built for model checking
//! (`RUSTFLAGS="--cfg pyo3_async_loom" cargo test --lib --release loom`, run by `make test`),
//! so that loom explores every interleaving of their critical sections.
//!
//! [`Waiter`]: crate::waker::Waiter

#[cfg(pyo3_async_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(pyo3_async_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

//! What pyo3-async holds right now, counted where it changes: the counters behind
//! [`stats`](crate::stats()).
//!
//! Each counter moves once per object's life (when it starts depending on a loop, and when it
//! ends), never per poll or per item, and only on paths that already did work with its loop:
//! a ready coroutine, an item of a stream or an `await` that does not suspend touch none. The
//! counts are read without stopping anything, so a snapshot taken while other threads work is
//! only as exact as its moment.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A count of live things of one kind.
pub(crate) struct Counter(AtomicUsize);

/// Exported coroutines bound to a loop (suspended at least once) that have not finished.
pub(crate) static SUSPENDED_COROUTINES: Counter = Counter::new();
/// Python awaitables started on a loop for a Rust caller (`EventLoop::spawn`, or requests a
/// coroutine could not delegate) whose outcome has not been handed over.
pub(crate) static PYTHON_TASKS: Counter = Counter::new();
/// `PyAsyncIter` pumps (the Python task iterating an async iterator for Rust) not finished.
pub(crate) static ASYNC_ITER_PUMPS: Counter = Counter::new();

impl Counter {
    const fn new() -> Self {
        Counter(AtomicUsize::new(0))
    }

    /// One more began.
    pub(crate) fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// One ended (exactly once for each `add`).
    pub(crate) fn remove(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

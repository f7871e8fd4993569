//! What trio's `abort_fn` asks of an awaitable's waker state.

use pyo3::Python;

/// Whether a suspension may be abandoned when a cancellation reaches it: when no wake-up was
/// committed and the future does not handle cancellation itself, or when none can ever come
/// (the awaitable was closed under its task, or is gone). Implemented by
/// the awaitable's shared allocation (its [`Waiter`](crate::waker::Waiter) and its driver), a
/// layer above.
pub(crate) trait Abort: Send + Sync {
    fn abort(&self, py: Python<'_>) -> bool;
}

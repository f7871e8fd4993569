//! What trio's `abort_fn` asks of an awaitable's waker state.

/// Whether a suspension may be abandoned when a cancellation reaches it: only when no
/// wake-up was committed and the future does not handle cancellation itself. Implemented by
/// the [`Waiter`](crate::waker::Waiter), a layer above.
pub(crate) trait Abort: Send + Sync {
    fn abort(&self) -> bool;
}

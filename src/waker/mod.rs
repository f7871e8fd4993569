//! The waker of an exported awaitable.
//!
//! - [`Waiter`] is the state every waker of one awaitable shares: polled, parked on its loop,
//!   woken, aborted or closed. It turns any number of `wake` calls, from any thread, into
//!   exactly one wake-up per suspension. It lives in the awaitable's own allocation, which
//!   every owned waker references.
//! - [`PollWaker`] is the waker each poll lends the future: it lives on the stack for that one
//!   poll, with an identity no earlier poll's waker shares, and it tells afterwards whether the
//!   future kept it (cloned it) or woke it. That is what makes delegation decisions
//!   deterministic (see [`delegation`](crate::delegation)), and what spares a future that is
//!   ready at once any reference counting.

mod poll_waker;
mod waiter;

pub(crate) use poll_waker::PollWaker;
pub(crate) use waiter::Waiter;

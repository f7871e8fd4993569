//! The waker of an awaitable's first poll, which allocates a [`Waiter`] only if the future
//! keeps the waker.
//!
//! Most awaited Rust futures are ready at once (a cache hit, a buffered item); giving each a
//! reference-counted waiter with a lock, only to close and free it right after, is a good part
//! of the cost of such an await. This waker lives on the stack for the duration of one poll.
//! A future that stores its waker clones it, and the clone is an ordinary waker of a waiter
//! created there and then; one that wakes itself without cloning just leaves a flag.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{RawWaker, RawWakerVTable, Wake, Waker};

use crate::waiter::Waiter;

/// The state behind the first poll's waker.
pub(crate) struct FirstPoll {
    waiter: OnceLock<Arc<Waiter>>,
    /// A wake through the borrowed waker before any clone existed.
    woken: AtomicBool,
}

impl FirstPoll {
    /// Polls with a waker of this first poll. Returns the poll's output and the waiter, if
    /// the future kept a clone of the waker or was woken during the poll (the waiter then
    /// remembers that wake, as after any poll).
    pub(crate) fn run<R>(poll: impl FnOnce(&Waker) -> R) -> (R, Option<Arc<Waiter>>) {
        let first = FirstPoll {
            waiter: OnceLock::new(),
            woken: AtomicBool::new(false),
        };
        // SAFETY: the vtable's functions receive a pointer to `first`, which outlives the
        // waker: the waker is only lent to `poll` (`ManuallyDrop`, never dropped, and its drop
        // function does nothing anyway), and every waker that can outlive the poll is a clone,
        // which is an independent waker of an `Arc<Waiter>`. `FirstPoll` is `Sync`, so wakes
        // from other threads holding the borrowed waker during the poll are sound.
        let waker = ManuallyDrop::new(unsafe {
            Waker::from_raw(RawWaker::new((&first as *const FirstPoll).cast(), &VTABLE))
        });
        let output = poll(&waker);
        let woken_through_borrow = first.woken.load(Ordering::Acquire);
        let mut waiter = first.waiter.into_inner();
        if woken_through_borrow {
            // Still in its polling state: the wake is recorded, not delivered.
            waiter.get_or_insert_with(Waiter::new).wake_by_ref();
        }
        (output, waiter)
    }
}

static VTABLE: RawWakerVTable =
    RawWakerVTable::new(clone_waker, wake_borrowed, wake_borrowed, drop_borrowed);

/// A clone is a real waker, of the waiter created now (or by an earlier clone).
///
/// # Safety
/// `data` is the `FirstPoll` of `FirstPoll::run`, alive while its borrowed waker is.
unsafe fn clone_waker(data: *const ()) -> RawWaker {
    // SAFETY: `data` points to the `FirstPoll` of a poll in progress (see `FirstPoll::run`).
    let first = unsafe { &*data.cast::<FirstPoll>() };
    let waiter = first.waiter.get_or_init(Waiter::new);
    let waker = ManuallyDrop::new(Waker::from(Arc::clone(waiter)));
    // The new waker's reference moves into the returned raw waker (hence `ManuallyDrop`).
    RawWaker::new(waker.data(), waker.vtable())
}

/// Only a borrowed waker exists to wake through (an owned one is always a clone).
///
/// # Safety
/// As for `clone_waker`.
unsafe fn wake_borrowed(data: *const ()) {
    // SAFETY: as in `clone_waker`.
    let first = unsafe { &*data.cast::<FirstPoll>() };
    match first.waiter.get() {
        Some(waiter) => waiter.wake_by_ref(),
        None => first.woken.store(true, Ordering::Release),
    }
}

/// The borrowed waker owns nothing.
///
/// # Safety
/// Always safe; `unsafe` only to fit the vtable.
unsafe fn drop_borrowed(_data: *const ()) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waker_neither_kept_nor_woken_costs_no_waiter() {
        let ((), waiter) = FirstPoll::run(|_| ());
        assert!(waiter.is_none());
    }

    #[test]
    fn waking_the_borrowed_waker_is_remembered() {
        let ((), waiter) = FirstPoll::run(|waker| waker.wake_by_ref());
        let waiter = waiter.expect("a parked task must be able to see the wake");
        assert!(waiter.woken_during_poll());
        assert_eq!(Arc::strong_count(&waiter), 1);
    }

    #[test]
    fn a_kept_clone_wakes_the_waiter() {
        let (kept, waiter) = FirstPoll::run(|waker| {
            let kept = waker.clone();
            let other = waker.clone();
            drop(other);
            kept
        });
        let waiter = waiter.expect("a clone creates the waiter");
        assert!(!waiter.woken_during_poll());
        assert_eq!(
            Arc::strong_count(&waiter),
            2,
            "the outcome's and the kept clone's"
        );
        kept.wake_by_ref();
        assert!(
            waiter.woken_during_poll(),
            "still polling: the wake is recorded"
        );
        drop(kept);
        assert_eq!(Arc::strong_count(&waiter), 1);
    }

    #[test]
    fn wakes_from_other_threads_during_the_poll_count() {
        let ((), waiter) = FirstPoll::run(|waker| {
            std::thread::scope(|scope| {
                scope.spawn(|| waker.wake_by_ref());
                scope.spawn(|| {
                    let kept = waker.clone();
                    kept.wake_by_ref();
                });
            });
        });
        assert!(waiter.is_some_and(|waiter| waiter.woken_during_poll()));
    }
}

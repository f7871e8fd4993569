//! The waker a poll lends its future.
//!
//! Each poll gets a fresh waker on the stack. The `Future` contract obliges a future that
//! returns `Pending` to arrange a wake-up of the waker of its most recent poll: since this one
//! compares unequal (`Waker::will_wake`) with every waker kept from earlier polls, a wake
//! source that stays pending must clone it during the poll — and the clone is counted. So after
//! the poll we know, without looking at reference counts that other threads change at any
//! moment, whether anything besides the delegated awaitable may wake the future.
//!
//! A clone is an ordinary waker of the awaitable's [`Waiter`], created on first need: a future
//! that is ready at once (the common case) costs no allocation.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{RawWaker, RawWakerVTable, Wake, Waker};

use super::waiter::Waiter;

/// The state behind one poll's waker.
pub(crate) struct PollWaker {
    waiter: OnceLock<Arc<Waiter>>,
    /// The waker was cloned during the poll (something may wake the future later).
    kept: AtomicBool,
    /// The waker was woken during the poll.
    woken: AtomicBool,
}

/// What a poll did with its waker.
pub(crate) struct PollReport {
    /// The awaitable's waiter: the one it had, or one created because the future kept or
    /// woke the waker. A wake during the poll is recorded in it (`woken_during_poll`).
    pub(crate) waiter: Option<Arc<Waiter>>,
    /// The future kept a clone of this poll's waker.
    pub(crate) kept: bool,
    /// The future woke this poll's waker (directly or through a clone) during the poll.
    pub(crate) woken: bool,
}

impl PollWaker {
    /// Polls with a fresh waker. `waiter` is the awaitable's, if it has one already (it is
    /// then put in its polling state first).
    pub(crate) fn run<R>(
        waiter: Option<&Arc<Waiter>>,
        poll: impl FnOnce(&Waker) -> R,
    ) -> (R, PollReport) {
        let this = PollWaker {
            waiter: match waiter {
                Some(waiter) => {
                    waiter.begin_poll();
                    OnceLock::from(Arc::clone(waiter))
                }
                None => OnceLock::new(),
            },
            kept: AtomicBool::new(false),
            woken: AtomicBool::new(false),
        };
        // SAFETY: the vtable's functions receive a pointer to `this`, which outlives the
        // waker: the waker is only lent to `poll` (`ManuallyDrop`, never dropped, and its drop
        // function does nothing anyway), and every waker that can outlive the poll is a clone,
        // which is an independent waker of an `Arc<Waiter>`. `PollWaker` is `Sync`, so wakes
        // from other threads holding the borrowed waker during the poll are sound.
        let waker = ManuallyDrop::new(unsafe {
            Waker::from_raw(RawWaker::new((&this as *const PollWaker).cast(), &VTABLE))
        });
        let output = poll(&waker);
        let kept = this.kept.load(Ordering::Acquire);
        let mut waiter = this.waiter.into_inner();
        if this.woken.load(Ordering::Acquire) {
            // Possibly woken before any waiter existed: the waiter, created now if need be and
            // still in its polling state, records the wake.
            waiter.get_or_insert_with(Waiter::new).wake_by_ref();
        }
        let woken = waiter
            .as_ref()
            .is_some_and(|waiter| waiter.woken_during_poll());
        (
            output,
            PollReport {
                waiter,
                kept,
                woken,
            },
        )
    }

    /// Whether `waker` is the one lent by the poll whose identity is `lent`.
    pub(crate) fn is(waker: &Waker, lent: *const ()) -> bool {
        std::ptr::eq(waker.vtable(), &VTABLE) && waker.data() == lent
    }
}

static VTABLE: RawWakerVTable =
    RawWakerVTable::new(clone_waker, wake_borrowed, wake_borrowed, drop_borrowed);

/// A clone is a real waker of the waiter (created now, or by an earlier clone), and counts.
///
/// # Safety
/// `data` is the `PollWaker` of `PollWaker::run`, alive while its borrowed waker is.
unsafe fn clone_waker(data: *const ()) -> RawWaker {
    // SAFETY: `data` points to the `PollWaker` of a poll in progress (see `PollWaker::run`).
    let this = unsafe { &*data.cast::<PollWaker>() };
    this.kept.store(true, Ordering::Release);
    let waiter = this.waiter.get_or_init(Waiter::new);
    let waker = ManuallyDrop::new(Waker::from(Arc::clone(waiter)));
    // The new waker's reference moves into the returned raw waker (hence `ManuallyDrop`).
    RawWaker::new(waker.data(), waker.vtable())
}

/// A wake through the borrowed waker (an owned one is always a clone).
///
/// # Safety
/// As for `clone_waker`.
unsafe fn wake_borrowed(data: *const ()) {
    // SAFETY: as in `clone_waker`.
    let this = unsafe { &*data.cast::<PollWaker>() };
    this.woken.store(true, Ordering::Release);
    if let Some(waiter) = this.waiter.get() {
        waiter.wake_by_ref();
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
        let ((), report) = PollWaker::run(None, |_| ());
        assert!(report.waiter.is_none());
        assert!(!report.kept && !report.woken);
    }

    #[test]
    fn waking_the_borrowed_waker_is_remembered() {
        let ((), report) = PollWaker::run(None, |waker| waker.wake_by_ref());
        let waiter = report
            .waiter
            .expect("a parked task must be able to see the wake");
        assert!(report.woken && !report.kept);
        assert!(waiter.woken_during_poll());
        assert_eq!(Arc::strong_count(&waiter), 1);
    }

    #[test]
    fn a_kept_clone_counts_and_wakes_the_waiter() {
        let (kept, report) = PollWaker::run(None, |waker| waker.clone());
        let waiter = report.waiter.expect("a clone creates the waiter");
        assert!(report.kept && !report.woken);
        kept.wake_by_ref();
        assert!(
            waiter.woken_during_poll(),
            "still polling: the wake is recorded"
        );
    }

    #[test]
    fn every_poll_lends_a_waker_no_kept_one_will_wake() {
        let waiter = Waiter::<crate::backend::Wakeup>::new();
        let (first, _) = PollWaker::run(Some(&waiter), |waker| waker.clone());
        let ((), report) = PollWaker::run(Some(&waiter), |waker| {
            // A future that keeps the waker of an earlier poll must replace it: it can tell.
            assert!(!first.will_wake(waker));
        });
        assert!(!report.kept, "nothing was cloned in the second poll");
        let ((), report) = PollWaker::run(Some(&waiter), |waker| drop(waker.clone()));
        assert!(report.kept, "a clone counts even if dropped at once");
    }

    #[test]
    fn the_lent_waker_is_recognised_by_identity() {
        let ((), _) = PollWaker::run(None, |waker| {
            assert!(PollWaker::is(waker, waker.data()));
            let clone = waker.clone();
            assert!(!PollWaker::is(&clone, waker.data()));
        });
    }

    #[test]
    fn wakes_from_other_threads_during_the_poll_count() {
        let ((), report) = PollWaker::run(None, |waker| {
            std::thread::scope(|scope| {
                scope.spawn(|| waker.wake_by_ref());
                scope.spawn(|| {
                    let kept = waker.clone();
                    kept.wake_by_ref();
                });
            });
        });
        assert!(report.woken && report.kept);
    }
}

//! The waker a poll lends its future.
//!
//! Each poll gets a fresh waker on the stack. The `Future` contract obliges a future that
//! returns `Pending` to arrange a wake-up of the waker of its most recent poll: since this one
//! compares unequal (`Waker::will_wake`) with every waker kept from earlier polls, a wake
//! source that stays pending must clone it during the poll — and the clone is counted. So after
//! the poll we know, without looking at reference counts that other threads change at any
//! moment, whether anything besides the delegated awaitable may wake the future.
//!
//! A clone is an ordinary waker of the awaitable: a new reference to the allocation its
//! [`Waiter`] lives in, made by the awaitable's `new_waker`. A future that is ready at once (the
//! common case) makes none.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{RawWaker, RawWakerVTable, Waker};

use super::waiter::Waiter;

/// Makes an owned waker of the awaitable being polled.
pub(crate) type NewWaker<'a> = &'a (dyn Fn() -> Waker + Sync);

/// The state behind one poll's waker.
pub(crate) struct PollWaker<'a> {
    waiter: &'a Waiter,
    new_waker: NewWaker<'a>,
    /// The waker was cloned during the poll (something may wake the future later).
    kept: AtomicBool,
    /// The borrowed waker was woken during the poll.
    woken: AtomicBool,
}

/// What a poll did with its waker.
pub(crate) struct PollReport {
    /// The future kept a clone of this poll's waker.
    pub(crate) kept: bool,
    /// The future woke this poll's waker (directly or through a clone) during the poll.
    pub(crate) woken: bool,
}

impl PollWaker<'_> {
    /// Polls with a fresh waker; `waiter` (the awaitable's) is put in its polling state first,
    /// and records a wake that arrives during the poll.
    ///
    /// `used`: whether the waiter may have left its initial state (a waker was made, a wake
    /// arrived, the task parked). A waiter never used is in its polling state already and no
    /// waker of it exists, so a poll that makes none either (a future ready at once, the common
    /// case) takes no lock: a wake can then only come through the borrowed waker, which says
    /// so itself.
    ///
    /// Always inlined into its one caller, the driver's poll: LLVM's own choice flipped with
    /// unrelated changes elsewhere in the crate, and the call it then made cost a ready `await`
    /// on 3.14 about 15 % in time (35 instructions, and the layout around them).
    #[inline(always)]
    pub(crate) fn run<R>(
        waiter: &Waiter,
        used: bool,
        new_waker: NewWaker<'_>,
        poll: impl FnOnce(&Waker) -> R,
    ) -> (R, PollReport) {
        if used {
            waiter.begin_poll();
        }
        let this = PollWaker {
            waiter,
            new_waker,
            kept: AtomicBool::new(false),
            woken: AtomicBool::new(false),
        };
        // SAFETY: the vtable's functions receive a pointer to `this`, which outlives the
        // waker: the waker is only lent to `poll` (`ManuallyDrop`, never dropped, and its drop
        // function does nothing anyway), and every waker that can outlive the poll is a clone,
        // which is an independent waker made by `new_waker`. `PollWaker` is `Sync`, so wakes
        // from other threads holding the borrowed waker during the poll are sound.
        let waker = ManuallyDrop::new(unsafe {
            Waker::from_raw(RawWaker::new((&this as *const PollWaker).cast(), &VTABLE))
        });
        let output = poll(&waker);
        let kept = this.kept.load(Ordering::Acquire);
        let woken = if used || kept {
            waiter.woken_during_poll()
        } else {
            this.woken.load(Ordering::Acquire)
        };
        (output, PollReport { kept, woken })
    }

    /// Whether `waker` is the one lent by the poll whose identity is `lent`.
    pub(crate) fn is(waker: &Waker, lent: *const ()) -> bool {
        std::ptr::eq(waker.vtable(), &VTABLE) && waker.data() == lent
    }
}

static VTABLE: RawWakerVTable =
    RawWakerVTable::new(clone_waker, wake_borrowed, wake_borrowed, drop_borrowed);

/// A clone is a real waker of the awaitable, and counts.
///
/// # Safety
/// `data` is the `PollWaker` of `PollWaker::run`, alive while its borrowed waker is.
unsafe fn clone_waker(data: *const ()) -> RawWaker {
    // SAFETY: `data` points to the `PollWaker` of a poll in progress (see `PollWaker::run`).
    let this = unsafe { &*data.cast::<PollWaker<'_>>() };
    this.kept.store(true, Ordering::Release);
    let waker = ManuallyDrop::new((this.new_waker)());
    // The new waker's reference moves into the returned raw waker (hence `ManuallyDrop`).
    RawWaker::new(waker.data(), waker.vtable())
}

/// A wake through the borrowed waker (an owned one is always a clone).
///
/// # Safety
/// As for `clone_waker`.
unsafe fn wake_borrowed(data: *const ()) {
    // SAFETY: as in `clone_waker`.
    let this = unsafe { &*data.cast::<PollWaker<'_>>() };
    this.woken.store(true, Ordering::Release);
    this.waiter.wake();
}

/// The borrowed waker owns nothing.
///
/// # Safety
/// Always safe; `unsafe` only to fit the vtable.
unsafe fn drop_borrowed(_data: *const ()) {}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A waiter in an allocation of its own, and how its wakers are made.
    fn waiter() -> (Arc<Waiter>, impl Fn() -> Waker + Sync) {
        let waiter = Arc::new(Waiter::new());
        let owner = Arc::clone(&waiter);
        (waiter, move || Waker::from(Arc::clone(&owner)))
    }

    #[test]
    fn a_waker_neither_kept_nor_woken_makes_no_waker() {
        let (waiter, new_waker) = waiter();
        let ((), report) = PollWaker::run(&waiter, true, &new_waker, |_| ());
        assert!(!report.kept && !report.woken);
        assert_eq!(Arc::strong_count(&waiter), 2, "no waker was made");
    }

    #[test]
    fn waking_the_borrowed_waker_is_remembered() {
        let (waiter, new_waker) = waiter();
        let ((), report) = PollWaker::run(&waiter, true, &new_waker, |waker| waker.wake_by_ref());
        assert!(report.woken && !report.kept);
        assert!(waiter.woken_during_poll());
        assert_eq!(Arc::strong_count(&waiter), 2, "no waker was made");
    }

    #[test]
    fn a_kept_clone_counts_and_wakes_the_waiter() {
        let (waiter, new_waker) = waiter();
        let (kept, report) = PollWaker::run(&waiter, true, &new_waker, |waker| waker.clone());
        assert!(report.kept && !report.woken);
        assert_eq!(Arc::strong_count(&waiter), 3, "the clone owns a reference");
        kept.wake_by_ref();
        assert!(
            waiter.woken_during_poll(),
            "still polling: the wake is recorded"
        );
    }

    #[test]
    fn every_poll_lends_a_waker_no_kept_one_will_wake() {
        let (waiter, new_waker) = waiter();
        let (first, _) = PollWaker::run(&waiter, true, &new_waker, |waker| waker.clone());
        let ((), report) = PollWaker::run(&waiter, true, &new_waker, |waker| {
            // A future that keeps the waker of an earlier poll must replace it: it can tell.
            assert!(!first.will_wake(waker));
        });
        assert!(!report.kept, "nothing was cloned in the second poll");
        let ((), report) = PollWaker::run(&waiter, true, &new_waker, |waker| drop(waker.clone()));
        assert!(report.kept, "a clone counts even if dropped at once");
    }

    #[test]
    fn a_wake_before_this_poll_is_forgotten() {
        let (waiter, new_waker) = waiter();
        let (kept, _) = PollWaker::run(&waiter, true, &new_waker, |waker| waker.clone());
        kept.wake_by_ref();
        let ((), report) = PollWaker::run(&waiter, true, &new_waker, |_| ());
        assert!(
            !report.woken,
            "the earlier wake was this poll's reason to run"
        );
    }

    #[test]
    fn an_unused_waiter_reports_a_wake_of_the_borrowed_waker() {
        let (waiter, new_waker) = waiter();
        let ((), report) = PollWaker::run(&waiter, false, &new_waker, |_| ());
        assert!(!report.woken && !report.kept);
        let ((), report) = PollWaker::run(&waiter, false, &new_waker, |waker| waker.wake_by_ref());
        assert!(report.woken && !report.kept);
        let (kept, report) = PollWaker::run(&waiter, false, &new_waker, |waker| {
            let kept = waker.clone();
            kept.wake_by_ref();
            kept
        });
        assert!(
            report.woken && report.kept,
            "a clone's wake is read from the waiter"
        );
        drop(kept);
    }

    #[test]
    fn the_lent_waker_is_recognised_by_identity() {
        let (waiter, new_waker) = waiter();
        let ((), _) = PollWaker::run(&waiter, true, &new_waker, |waker| {
            assert!(PollWaker::is(waker, waker.data()));
            let clone = waker.clone();
            assert!(!PollWaker::is(&clone, waker.data()));
        });
    }

    #[test]
    fn wakes_from_other_threads_during_the_poll_count() {
        let (waiter, new_waker) = waiter();
        let ((), report) = PollWaker::run(&waiter, true, &new_waker, |waker| {
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

//! The waker of an exported awaitable: remembers whether the task is being polled or parked
//! on its event loop, and turns `wake` into exactly one wake-up per suspension.

#[cfg(test)]
use std::sync::Arc;
use std::sync::PoisonError;
#[cfg(test)]
use std::task::Wake;

use crate::backend::{Suspend, Wakeup};
use crate::sync::{Mutex, MutexGuard};

/// What gets a parked task running again: a backend's [`Wakeup`] (or, in the model checks, a
/// counter).
pub(crate) trait Deliver: Send + Sync + 'static {
    /// From any thread, never waiting for the interpreter.
    fn deliver(self);
}

impl Deliver for Wakeup {
    fn deliver(self) {
        Wakeup::deliver(self);
    }
}

/// Shared between an awaitable (on the loop thread) and every clone of its waker (anywhere).
/// It lives in the awaitable's own allocation, beside its driver: a waker is a reference to
/// that allocation, so parking costs no allocation of its own (24 bytes here; an `Arc` of its
/// own took a 64-byte block per pending awaitable).
///
/// Critical sections never call into Python and never drop Python objects: a waker may run on
/// any thread, including the loop thread while it holds the interpreter, so the lock is only
/// ever held for a state change. The wake-up itself is delivered after unlocking.
pub(crate) struct Waiter<W = Wakeup> {
    state: Mutex<State<W>>,
}

enum State<W> {
    /// The future is being polled; `woken` records a wake that arrives meanwhile.
    Polling { woken: bool },
    /// The task is suspended on its loop; the first wake delivers this.
    Parked(W),
    /// The wake-up for the current suspension has been delivered (or is in flight).
    Woken,
    /// trio aborted the suspension: the task resumes with `Cancelled` and must never be
    /// rescheduled for it.
    Aborted,
    /// The awaitable finished: wakes are ignored.
    Closed,
}

impl<W: Deliver> Waiter<W> {
    pub(crate) fn new() -> Self {
        Waiter {
            state: Mutex::new(State::Polling { woken: false }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<W>> {
        // No code that can panic runs under the lock, but a poisoned state is still valid.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Swaps the state; the lock is released before the previous state (and any Python
    /// object in it) is dropped by the caller.
    fn replace(&self, new: State<W>) -> State<W> {
        std::mem::replace(&mut *self.lock(), new)
    }

    /// Starts a poll, forgetting any earlier suspension.
    pub(crate) fn begin_poll(&self) {
        drop(self.replace(State::Polling { woken: false }));
    }

    /// Parks after a poll returned `Pending`. Gives the wake-up back if the future was woken
    /// during the poll: the caller must then make the loop resume the task at once.
    pub(crate) fn park(&self, wakeup: W) -> Result<(), W> {
        let mut state = self.lock();
        match *state {
            State::Polling { woken: false } => {
                *state = State::Parked(wakeup);
                Ok(())
            }
            _ => Err(wakeup),
        }
    }

    /// Whether a wake arrived during the poll in progress.
    pub(crate) fn woken_during_poll(&self) -> bool {
        matches!(*self.lock(), State::Polling { woken: true })
    }

    /// trio's abort: true when the suspension may be abandoned. Either it is parked with no
    /// wake-up committed, and `keeps_waiting` (whether the future handles cancellation itself,
    /// asked under the lock: it must not call into Python) says no; or the awaitable was closed
    /// under the parked task, so no wake-up will ever come and the abort is the task's only way
    /// out.
    pub(crate) fn abort(&self, keeps_waiting: impl FnOnce() -> bool) -> bool {
        let mut state = self.lock();
        match *state {
            State::Closed => true,
            State::Parked(_) if !keeps_waiting() => {
                let parked = std::mem::replace(&mut *state, State::Aborted);
                drop(state);
                drop(parked);
                true
            }
            _ => false,
        }
    }

    /// Ends the current suspension without a wake, handing its wake-up to the caller when
    /// `take` says so (the state is then `Woken`, as after a wake): the caller delivers it.
    pub(crate) fn take_parked(&self, take: impl FnOnce(&W) -> bool) -> Option<W> {
        let mut state = self.lock();
        if !matches!(&*state, State::Parked(wakeup) if take(wakeup)) {
            return None;
        }
        match std::mem::replace(&mut *state, State::Woken) {
            State::Parked(wakeup) => Some(wakeup),
            _ => None,
        }
    }

    /// The awaitable finished: later wakes do nothing.
    pub(crate) fn close(&self) {
        drop(self.replace(State::Closed));
    }

    /// The wake-up of the current suspension, for the garbage collector. The caller has
    /// checked that no waker of the future is alive anywhere (its allocation has no other
    /// owner), so nothing can ever deliver it and the Python objects it holds belong to the
    /// awaitable alone. A waker alive anywhere (a timer, a channel, another thread) is a root
    /// the collector cannot see, as a native task's future is reachable from whatever will
    /// resolve it.
    ///
    /// Never blocks: `None` when another thread is changing the state.
    pub(crate) fn parked_wakeup<R>(&self, visit: impl FnOnce(&W) -> R) -> Option<R> {
        let state = self.state.try_lock().ok()?;
        match &*state {
            State::Parked(wakeup) => Some(visit(wakeup)),
            _ => None,
        }
    }

    /// A wake, from any thread: delivers the wake-up of the current suspension (once), or
    /// records it for the poll in progress.
    pub(crate) fn wake(&self) {
        let wakeup = {
            let mut state = self.lock();
            match std::mem::replace(&mut *state, State::Woken) {
                State::Parked(wakeup) => wakeup,
                State::Polling { .. } => {
                    *state = State::Polling { woken: true };
                    return;
                }
                unchanged => {
                    *state = unchanged;
                    return;
                }
            }
        };
        wakeup.deliver();
    }
}

impl Suspend for Waiter {
    fn woken_during_poll(&self) -> bool {
        Waiter::woken_during_poll(self)
    }

    fn park(&self, wakeup: Wakeup) -> Result<(), Wakeup> {
        Waiter::park(self, wakeup)
    }
}

/// A waiter of its own, for the tests: the driver's wakers wake the allocation it lives in.
#[cfg(test)]
impl<W: Deliver> Wake for Waiter<W> {
    fn wake(self: Arc<Self>) {
        Waiter::wake(&self);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        Waiter::wake(self);
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    #[test]
    fn wakes_during_a_poll_are_remembered_until_the_next_poll() {
        let waiter = Arc::new(Waiter::<Wakeup>::new());
        let waker = Waker::from(Arc::clone(&waiter));
        assert!(!waiter.woken_during_poll());
        waker.wake_by_ref();
        waker.wake_by_ref();
        assert!(waiter.woken_during_poll());
        waiter.begin_poll();
        assert!(!waiter.woken_during_poll());
    }

    #[test]
    fn an_abort_ends_a_suspension_no_wake_up_can_end() {
        let waiter = Arc::new(Waiter::<Wakeup>::new());
        assert!(!waiter.abort(|| false), "polling: no suspension to abort");
        waiter.close();
        assert!(
            waiter.abort(|| true),
            "closed under its task: nothing will ever wake it"
        );
    }

    #[test]
    fn wakes_after_close_are_ignored_from_any_thread() {
        let waiter = Arc::new(Waiter::<Wakeup>::new());
        let waker = Waker::from(Arc::clone(&waiter));
        waiter.close();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let waker = waker.clone();
                scope.spawn(move || {
                    for _ in 0..1000 {
                        waker.wake_by_ref();
                    }
                });
            }
        });
        assert!(!waiter.woken_during_poll());
    }
}

/// Every interleaving of a suspension's poll, park, wakes and abort (trio), checked by loom:
/// each suspension gets exactly one wake-up, or is abandoned by an abort, never both, never
/// none.
#[cfg(all(test, pyo3_async_loom))]
mod loom_tests {
    use std::sync::Arc;

    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::thread;

    use super::{Deliver, Waiter};

    /// A wake-up that counts its deliveries.
    struct Counted(Arc<AtomicUsize>);

    impl Deliver for Counted {
        fn deliver(self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The poll's end: park, or resume at once when woken during the poll (the caller
    /// delivers the wake-up it got back).
    fn park(waiter: &Waiter<Counted>, delivered: &Arc<AtomicUsize>) {
        if let Err(wakeup) = waiter.park(Counted(Arc::clone(delivered))) {
            wakeup.deliver();
        }
    }

    #[test]
    fn loom_a_wake_racing_the_poll_is_delivered_once() {
        loom::model(|| {
            let waiter = Arc::new(Waiter::<Counted>::new());
            let delivered = Arc::new(AtomicUsize::new(0));
            waiter.begin_poll();
            let waker = {
                let waiter = Arc::clone(&waiter);
                thread::spawn(move || waiter.wake())
            };
            park(&waiter, &delivered);
            waker.join().unwrap();
            assert_eq!(delivered.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn loom_two_wakers_deliver_one_wake_up() {
        loom::model(|| {
            let waiter = Arc::new(Waiter::<Counted>::new());
            let delivered = Arc::new(AtomicUsize::new(0));
            waiter.begin_poll();
            let wakers: Vec<_> = (0..2)
                .map(|_| {
                    let waiter = Arc::clone(&waiter);
                    thread::spawn(move || waiter.wake())
                })
                .collect();
            park(&waiter, &delivered);
            for waker in wakers {
                waker.join().unwrap();
            }
            assert_eq!(delivered.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn loom_an_abort_racing_a_wake_wins_or_loses_whole() {
        loom::model(|| {
            let waiter = Arc::new(Waiter::<Counted>::new());
            let delivered = Arc::new(AtomicUsize::new(0));
            waiter.begin_poll();
            park(&waiter, &delivered);
            let waker = {
                let waiter = Arc::clone(&waiter);
                thread::spawn(move || waiter.wake())
            };
            let aborted = waiter.abort(|| false);
            waker.join().unwrap();
            assert_eq!(usize::from(aborted) + delivered.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn loom_wakes_after_close_are_ignored() {
        loom::model(|| {
            let waiter = Arc::new(Waiter::<Counted>::new());
            let delivered = Arc::new(AtomicUsize::new(0));
            waiter.begin_poll();
            park(&waiter, &delivered);
            let waker = {
                let waiter = Arc::clone(&waiter);
                thread::spawn(move || waiter.wake())
            };
            // The wake-up resumes the task, whose next poll finishes the awaitable.
            waker.join().unwrap();
            waiter.begin_poll();
            waiter.close();
            waiter.wake();
            assert_eq!(delivered.load(Ordering::SeqCst), 1);
        });
    }
}

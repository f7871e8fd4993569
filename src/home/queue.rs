//! A home's job queue and its route: how pushed jobs reach the loop, and when the signal must
//! be raised. Pure Rust, generic over the job, so that loom can check its one promise:
//! **a queued job always has a wake-up on its way** (the signal raised, or the forwarder
//! kicked), whatever the interleaving of pushes, drains and route changes.
//!
//! The drain clears the signal *before* taking the jobs: a job pushed after the take finds
//! the queue empty and raises the signal again; one pushed before it is taken.

use std::sync::PoisonError;

use crate::sync::{Mutex, MutexGuard};

/// How pushed jobs reach the loop.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Route {
    /// The loop watches the signal.
    Signal,
    /// Through the forwarder thread and the loop's thread-safe entry point.
    Forward,
    /// The loop died: jobs are dropped.
    Dead,
}

/// What a push asks of the pusher, after the queue's lock is released.
pub(crate) enum Pushed<J> {
    /// A wake-up is already on its way for the jobs before this one.
    Queued,
    /// The queue was empty: raise the signal, or kick the forwarder.
    Wake(Route),
    /// The loop is dead: the job comes back, to be passed on or dropped outside the lock.
    Refused(J),
}

/// What became of jobs put back at the front of the queue.
pub(crate) enum Requeued<J> {
    /// There were none.
    Nothing,
    /// Queued: raise the signal, or kick the forwarder.
    Wake(Route),
    /// The loop died meanwhile: the jobs come back.
    Refused(Vec<J>),
}

pub(crate) struct Queue<J> {
    state: Mutex<State<J>>,
}

struct State<J> {
    jobs: Vec<J>,
    route: Route,
}

impl<J> Queue<J> {
    pub(crate) fn new() -> Self {
        Queue {
            state: Mutex::new(State {
                jobs: Vec::new(),
                route: Route::Signal,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        // Nothing panics under the lock, but a poisoned state is still valid.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many jobs wait for the next drain.
    pub(crate) fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    pub(crate) fn push(&self, job: J) -> Pushed<J> {
        let mut state = self.lock();
        if state.route == Route::Dead {
            return Pushed::Refused(job);
        }
        state.jobs.push(job);
        if state.jobs.len() > 1 {
            Pushed::Queued
        } else {
            Pushed::Wake(state.route)
        }
    }

    /// The loop's thread, after clearing the signal: every job queued so far.
    pub(crate) fn take(&self) -> Vec<J> {
        std::mem::take(&mut self.lock().jobs)
    }

    /// Puts undelivered jobs back at the front. They need a wake-up of their own: the queue
    /// had been taken empty, so one is on its way only for jobs pushed since, and the drain
    /// that put them back stops there.
    pub(crate) fn requeue(&self, mut jobs: Vec<J>) -> Requeued<J> {
        if jobs.is_empty() {
            return Requeued::Nothing;
        }
        let mut state = self.lock();
        if state.route == Route::Dead {
            return Requeued::Refused(jobs);
        }
        jobs.append(&mut state.jobs);
        state.jobs = jobs;
        Requeued::Wake(state.route)
    }

    /// The loop no longer watches the signal (it still runs): later wake-ups are forwarded.
    ///
    /// Returns whether jobs are queued: their wake-up was the signal, which nobody watches
    /// now, so the caller owes them one (a drain, or a kick of the forwarder).
    #[must_use]
    pub(crate) fn stop_watching(&self) -> bool {
        let mut state = self.lock();
        if state.route == Route::Signal {
            state.route = Route::Forward;
        }
        !state.jobs.is_empty()
    }

    pub(crate) fn route(&self) -> Route {
        self.lock().route
    }

    /// The loop died (or its home handed over): later pushes are refused; the queued jobs come
    /// back, to be passed on or dropped outside the lock.
    pub(crate) fn die(&self) -> Vec<J> {
        let mut state = self.lock();
        state.route = Route::Dead;
        std::mem::take(&mut state.jobs)
    }

    /// The model checks' invariant: a non-empty queue has a wake-up on its way, which for
    /// the signal route means the signal is raised.
    #[cfg(all(test, pyo3_async_loom))]
    fn is_empty(&self) -> bool {
        self.lock().jobs.is_empty()
    }
}

#[cfg(all(test, pyo3_async_loom))]
mod loom_tests {
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::Arc;
    use loom::thread;

    use super::*;

    /// The signal, as loom sees it: raised by pushers, cleared by the drain.
    struct Model {
        queue: Queue<u32>,
        signal: AtomicBool,
    }

    impl Model {
        fn push(&self, job: u32) {
            if let Pushed::Wake(Route::Signal) = self.queue.push(job) {
                self.signal.store(true, Ordering::SeqCst);
            }
        }

        /// One pass of the loop's drain, if the signal is raised.
        fn drain(&self) -> Vec<u32> {
            if !self.signal.load(Ordering::SeqCst) {
                return Vec::new();
            }
            self.signal.store(false, Ordering::SeqCst);
            self.queue.take()
        }
    }

    #[test]
    fn loom_a_queued_job_always_has_the_signal_raised() {
        loom::model(|| {
            let model = Arc::new(Model {
                queue: Queue::new(),
                signal: AtomicBool::new(false),
            });
            let pushers: Vec<_> = (0..2)
                .map(|job| {
                    let model = Arc::clone(&model);
                    thread::spawn(move || model.push(job))
                })
                .collect();
            let mut drained = model.drain();
            for pusher in pushers {
                pusher.join().unwrap();
            }
            if !model.queue.is_empty() {
                assert!(
                    model.signal.load(Ordering::SeqCst),
                    "a queued job without a wake-up"
                );
            }
            // The loop keeps draining while the signal is raised: every job arrives once.
            drained.extend(model.drain());
            drained.sort_unstable();
            assert_eq!(drained, [0, 1]);
        });
    }

    #[test]
    fn loom_requeued_jobs_keep_their_wake_up() {
        loom::model(|| {
            let model = Arc::new(Model {
                queue: Queue::new(),
                signal: AtomicBool::new(false),
            });
            model.push(0);
            let pusher = {
                let model = Arc::clone(&model);
                thread::spawn(move || model.push(1))
            };
            // A drain interrupted after its first job puts the rest back.
            let mut taken = model.drain();
            let mut delivered = Vec::new();
            if !taken.is_empty() {
                delivered.push(taken.remove(0));
                if let Requeued::Wake(Route::Signal) = model.queue.requeue(taken) {
                    model.signal.store(true, Ordering::SeqCst);
                }
            }
            pusher.join().unwrap();
            delivered.extend(model.drain());
            delivered.sort_unstable();
            assert_eq!(delivered, [0, 1]);
        });
    }

    #[test]
    fn loom_a_push_racing_death_is_refused_or_dropped_by_it() {
        loom::model(|| {
            let queue = Arc::new(Queue::new());
            let pusher = {
                let queue = Arc::clone(&queue);
                thread::spawn(move || matches!(queue.push(7u32), Pushed::Refused(7)))
            };
            let dropped = queue.die();
            let refused = pusher.join().unwrap();
            // Exactly one side owns the job at the end; nothing stays queued.
            assert_eq!(usize::from(refused) + dropped.len(), 1);
            assert!(queue.is_empty());
        });
    }
}

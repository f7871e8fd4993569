//! Succession: a home that its loop let go of while the loop runs on.
//!
//! A loop lets go of its home's watcher or keeper when it dies (see [`drain`](super::drain)),
//! but also where the program takes them away while the loop runs on: it removed the home's
//! reader (`loop.remove_reader(fd)`) or cancelled its keeper timer. The loop has not died, so
//! nothing of it may end: the home hands over to a *successor*, a new home of the same loop
//! that watches it again ([`Home::lost`]). Its queued jobs and its dependents move to the
//! successor, and whatever still holds the old home (a parked task's wake-up, a `PyFuture`'s
//! canceller, a stream's pump) reaches the loop through it: a job the old home refuses goes
//! to the successor. Nothing observes the change but the new reader. The backend says whether
//! a loop runs on (asyncio: `is_running()`); a trio run's home dies only with the run, and a
//! loop that is not running (closed, collected, or open between two runs) gets no successor.
//!
//! | the loop lets go of | while | the home |
//! |---|---|---|
//! | its reader or keeper | it runs | hands over to a successor |
//! | a successor's new reader, while the successor is made | it runs | forwards, with a keeper |
//! | a successor's new keeper, while the successor is made | it runs | forwards |
//! | its reader or keeper | it is closed, collected, or between two runs | dies |
//!
//! What the backend records of the loop (asyncio: its shutdown) is not the home's to lose: the
//! registry hands a new home of the loop its predecessor, whose record it carries on.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pyo3::prelude::*;

use super::forwarder::{self, Forward};
use super::queue::Route;
use super::{Home, Job};

/// How a backend carries a loop on past a home that the loop let go of while it runs (see
/// [`Home::lost`]); `None` in [`Parts`](super::Parts) where a loop cannot outlive its home (a
/// trio run).
pub(crate) struct Succession {
    /// A new home for the loop, if it runs on: `Ok(None)` where it is not running. (The
    /// registry hands the new home the old one, to carry on what the backend records of the
    /// loop.)
    pub(crate) succeed: fn(&Bound<'_, PyAny>) -> PyResult<Option<Arc<Home>>>,
    /// Has the loop keep `keeper` (a [`Home::keeper_drain`]), for a home whose reader the
    /// loop let go of at once: a timer due in decades, whose release tells of the loop's
    /// death, as for a loop that cannot watch (see [`drain`](super::drain)).
    pub(crate) keep: fn(&Bound<'_, PyAny>, Py<PyAny>) -> PyResult<()>,
}

thread_local! {
    /// The loops (their addresses) this thread is finding a successor for: a successor whose
    /// own watcher its loop refuses at once forwards its jobs, rather than look for a
    /// successor in turn. Per loop: another loop that loses its home meanwhile (the Python
    /// code of one succession kills another loop's home) still gets its successor.
    static SUCCEEDING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

impl Home {
    /// The loop let go of the home's watcher or keeper (see [`drain`]). If it runs on (the
    /// program took them away), the home hands over to a successor (see the
    /// [module](self)): queued jobs and dependents move there, and later jobs are passed on.
    /// Otherwise the loop is gone, and the home [dies](Home::die).
    ///
    /// A successor that the loop lets go of while it is being made is served as a loop that
    /// cannot watch is ([`forward_instead`](Home::forward_instead)): the loop runs (the
    /// succession under way found it running), so nothing of it may end, and a chain of
    /// successors that each die at once would never end.
    pub(crate) fn lost(self: &Arc<Self>, py: Python<'_>) {
        let event_loop = self.event_loop.as_ptr() as usize;
        let nested = SUCCEEDING.with_borrow(|loops| loops.contains(&event_loop));
        if let (true, Some(succession)) = (nested, self.succession) {
            return self.forward_instead(py, succession);
        }
        self.retired.store(true, Ordering::Release);
        let successor = match self.succession {
            Some(succession) => {
                SUCCEEDING.with_borrow_mut(|loops| loops.push(event_loop));
                let found = (succession.succeed)(self.event_loop.bind(py));
                SUCCEEDING.with_borrow_mut(|loops| loops.retain(|other| *other != event_loop));
                // No successor where the backend cannot make one: the loop's old home dies
                // as it would have without succession.
                found.ok().flatten()
            }
            _ => None,
        };
        let Some(successor) = successor else {
            return self.die(py);
        };
        // Before the queue refuses anything: a refused job always finds the successor.
        let _ = self.successor.set(Arc::clone(&successor));
        for job in self.queue.die() {
            successor.run(job);
        }
        for dependent in self.take_dependents() {
            if dependent.strong_count() > 0 {
                successor.depend(py, dependent);
            }
        }
    }

    /// A successor whose reader (or keeper) the loop let go of while it was made: its jobs go
    /// through the [`forwarder`](super::forwarder) from now on, those already queued too
    /// (their signal was raised for a reader that is gone, so the forwarder is kicked for
    /// them). A loop that let go of the reader gets a keeper, which it may keep; one that
    /// lets go of that too is seen dead only at the next job forwarded to it, as a loop with
    /// neither a reader nor timers.
    fn forward_instead(self: &Arc<Self>, py: Python<'_>, succession: &Succession) {
        let had_reader = self.queue.route() == Route::Signal;
        if self.queue.stop_watching() {
            forwarder::kick(Arc::clone(self) as Arc<dyn Forward>);
        }
        if had_reader {
            if let Ok(keeper) = self.keeper_drain(py) {
                // Refused (no timers): forwarding alone, as above.
                let _ = (succession.keep)(self.event_loop.bind(py), keeper);
            }
        }
    }

    /// The home that took over from this one, if any.
    pub(super) fn successor(&self) -> Option<&Arc<Home>> {
        self.successor.get()
    }

    /// A job this home refuses: to the successor, if any, else dropped.
    pub(super) fn pass_on(&self, job: Job) {
        match self.successor() {
            Some(successor) => successor.run(job),
            None => drop(job),
        }
    }
}

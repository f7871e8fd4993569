//! One home per event loop: the loop object, the one way to run something on its thread, and
//! what must end when the loop dies.
//!
//! A home is found through the [registry](registry), keyed by the loop (an asyncio loop or a
//! trio run's token), so every handle, parker and task of a loop shares it, however many
//! threads, switches and handles there are.
//!
//! **The one way onto the loop's thread** is [`Home::run`]: any thread, attached or not, pushes
//! a job into the home's queue, and the first job after the queue was drained raises the
//! [`Signal`](signal::Signal) — one system call, no interpreter, and a burst of jobs costs the
//! loop one pass. The loop watches the signal and drains the queue on its thread, whichever
//! thread runs it now. A loop that cannot watch a socket (no `add_reader`: Windows' Proactor
//! loop, custom loops), and a trio run whose system tasks (the watcher among them) were
//! cancelled, get their jobs through the [forwarder](forwarder) thread instead, which attaches
//! and calls the loop's thread-safe entry point: a job's sender still never waits for the
//! interpreter.
//!
//! **Death.** When the loop lets go of its watcher (an asyncio loop closes; a trio run ends), or
//! of its keeper (an asyncio loop that cannot watch keeps a timer that never fires, which its
//! `close()` drops: see [`drain`]), or its thread-safe entry refuses work, the home dies: queued jobs are dropped (their senders
//! learn it), and every [`Dependent`] registered with it — suspended coroutines, `PyFuture`s,
//! streams — ends at once, without the garbage collector.

//!
//! A loop that lets go of its home while it runs on has not died: the home hands over to a
//! [successor](succession).

pub(crate) mod drain;
pub(crate) mod forwarder;
pub(crate) mod queue;
pub(crate) mod registry;
pub(crate) mod reraise;
pub(crate) mod signal;
pub(crate) mod succession;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use self::forwarder::Forward;
use self::queue::{Pushed, Queue, Requeued, Route};
use self::registry::{Keyed, Registry};
use self::signal::Signal;
pub(crate) use self::succession::Succession;
use crate::visit::Visit;

/// Work for the loop's thread. An error that is not an `Exception` (`KeyboardInterrupt`,
/// `SystemExit`) propagates from the drain as from any loop callback; the jobs after it stay
/// queued.
pub(crate) type Job = Box<dyn FnOnce(Python<'_>) -> PyResult<()> + Send>;

/// Something tied to a loop that must end when the loop dies.
pub(crate) trait Dependent: Send + Sync {
    /// The loop is gone (on its last thread, or wherever its death was noticed): end now.
    fn loop_died(&self, py: Python<'_>);
}

pub(crate) struct Home {
    /// The asyncio loop, or the trio run's token.
    event_loop: Py<PyAny>,
    /// `loop.call_soon_threadsafe` or `token.run_sync_soon`: how the forwarder gets in.
    threadsafe: Py<PyAny>,
    /// What the backend's Python side keeps of this loop, if anything (asyncio: the tasks it
    /// started and whether the loop shuts down).
    record: Option<Py<PyAny>>,
    /// asyncio: a resolved and a cancelled future of this loop, made on first use, that a C
    /// task's wake-up reads in place of a finished `WakeupFuture` (`backend::finished_future`);
    /// `None` inside where the loop has no C futures.
    stand_ins: OnceLock<Option<(Py<PyAny>, Py<PyAny>)>>,
    signal: Signal,
    queue: Queue<Job>,
    /// Taken before the queue's lock when both are needed (see [`Home::depend`]).
    dependents: Mutex<Dependents>,
    /// How the backend carries the loop on past this home (see [`Parts::succession`]).
    succession: Option<&'static Succession>,
    /// Set first when the loop lets go of the home: the registry hands it out no more.
    retired: AtomicBool,
    /// The home that took over from this one while the loop ran on (see [`Home::lost`]):
    /// set before the queue is marked dead, so that a job the queue refuses always finds it.
    /// Strong: an old home's holders (a parked task's wake-up, a `PyFuture`'s canceller)
    /// reach the loop through the chain of its successors, however many followed; each one
    /// is reported to the collector with its predecessor ([`Home::traverse_as_sole_owner`]).
    successor: OnceLock<Arc<Home>>,
}

struct Dependents {
    /// Held weakly: a dependent ends when the loop dies, if it still exists.
    list: Vec<Weak<dyn Dependent>>,
    /// Ended dependents are swept out when the list reaches this length.
    sweep_at: usize,
}

impl Home {
    fn new(
        event_loop: Py<PyAny>,
        threadsafe: Py<PyAny>,
        record: Option<Py<PyAny>>,
        succession: Option<&'static Succession>,
    ) -> std::io::Result<Self> {
        Ok(Home {
            event_loop,
            threadsafe,
            record,
            stand_ins: OnceLock::new(),
            signal: Signal::new()?,
            queue: Queue::new(),
            dependents: Mutex::new(Dependents {
                list: Vec::new(),
                sweep_at: 64,
            }),
            succession,
            retired: AtomicBool::new(false),
            successor: OnceLock::new(),
        })
    }

    fn wake(self: &Arc<Self>, route: Route) {
        match route {
            Route::Signal => self.signal.raise(),
            Route::Forward => forwarder::kick(Arc::clone(self) as Arc<dyn Forward>),
            Route::Dead => {}
        }
    }

    /// The asyncio loop, or the trio run's token.
    pub(crate) fn event_loop(&self) -> &Py<PyAny> {
        &self.event_loop
    }

    /// What the backend keeps of this loop on the Python side (see [`Parts`]).
    pub(crate) fn record(&self) -> Option<&Py<PyAny>> {
        self.record.as_ref()
    }

    /// The backend's finished stand-ins for this loop (see the field), once made: whoever
    /// makes them (attached, outside the cell: making them runs Python code) stores them here,
    /// and the first stored wins.
    pub(crate) fn stand_ins(&self) -> &OnceLock<Option<(Py<PyAny>, Py<PyAny>)>> {
        &self.stand_ins
    }

    /// Runs `job` on the loop's thread, soon. Any thread, attached or not; never waits for the
    /// interpreter. A home that handed over to a successor passes the job on; a dead loop
    /// drops it (after the lock is released).
    pub(crate) fn run(self: &Arc<Self>, job: Job) {
        match self.queue.push(job) {
            Pushed::Queued => {}
            Pushed::Wake(route) => self.wake(route),
            Pushed::Refused(job) => self.pass_on(job),
        }
    }

    /// Runs `job` on the loop's thread: now when `here` (this thread runs the loop now), else
    /// through [`run`](Home::run). Its error is returned only when it ran now.
    pub(crate) fn run_now_or_soon(
        self: &Arc<Self>,
        py: Python<'_>,
        here: bool,
        job: Job,
    ) -> PyResult<()> {
        if here {
            return job(py);
        }
        self.run(job);
        Ok(())
    }

    /// Registers `dependent` to end when the loop dies (at once, if it is dead already).
    ///
    /// Whether the loop is dead is read under the dependents' lock: [`die`](Home::die) marks
    /// the queue dead before it takes the dependents, so a dependent either sees the death
    /// here or is among those `die` takes.
    pub(crate) fn depend(&self, py: Python<'_>, dependent: Weak<dyn Dependent>) {
        let mut dependents = self
            .dependents
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.queue.route() == Route::Dead {
            drop(dependents);
            if let Some(successor) = self.successor() {
                successor.depend(py, dependent);
            } else if let Some(dependent) = dependent.upgrade() {
                dependent.loop_died(py);
            }
            return;
        }
        if dependents.list.len() >= dependents.sweep_at {
            dependents
                .list
                .retain(|dependent| dependent.strong_count() > 0);
            dependents.sweep_at = (2 * dependents.list.len()).max(64);
        }
        dependents.list.push(dependent);
    }

    /// Raises `raised` again where CPython would have raised it (see [`reraise`]), or, if
    /// CPython cannot take it, from this loop's next drain.
    pub(crate) fn raise_soon(self: &Arc<Self>, raised: PyErr) {
        if let Err(raised) = reraise::raise_soon(raised) {
            self.run(Box::new(move |_| Err(raised)));
        }
    }

    /// Whether the loop died: a home that handed over to a successor lives on in it (what
    /// it is sent is passed on), until the last of the chain dies.
    pub(crate) fn is_dead(&self) -> bool {
        self.queue.route() == Route::Dead && self.successor().is_none_or(|next| next.is_dead())
    }

    /// The loop's thread: runs every queued job. A job failing with a `BaseException` that is
    /// not an `Exception` stops the drain there and propagates; the jobs after it stay queued,
    /// with the signal raised again, so no wake-up is lost.
    ///
    /// Pending signal handlers (Ctrl-C's `KeyboardInterrupt`), and exceptions waiting to be
    /// raised again ([`reraise`]), run *between* jobs: a job's own Python calls would
    /// otherwise run them halfway through it (inside asyncio's `call_soon`, after a future was
    /// marked done but before its task was scheduled), and the wake-up it delivered would be
    /// lost. An exception from them stops the drain like a job's, with the job it preceded
    /// queued again.
    fn drain(self: &Arc<Self>, py: Python<'_>) -> PyResult<()> {
        // Signal first, then the queue: a job pushed after the queue was taken raises a new
        // signal, so none is left behind.
        self.signal.clear();
        let mut batch = self.queue.take().into_iter();
        while let Some(job) = batch.next() {
            if let Err(interrupt) = py
                .check_signals()
                .and_then(|()| reraise::raise_pending_now(py))
            {
                self.requeue(std::iter::once(job).chain(batch).collect());
                return Err(interrupt);
            }
            // A panic must not unwind into the loop's callback machinery.
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(py)));
            let Ok(Err(err)) = ran else { continue };
            if err.is_instance_of::<PyException>(py) {
                err.write_unraisable(py, None);
                continue;
            }
            self.requeue(batch.collect());
            return Err(err);
        }
        Ok(())
    }

    /// Puts undelivered jobs back at the front of the queue (or passes them on, if the home
    /// died meanwhile).
    fn requeue(self: &Arc<Self>, jobs: Vec<Job>) {
        match self.queue.requeue(jobs) {
            Requeued::Wake(route) => self.wake(route),
            Requeued::Nothing => {}
            Requeued::Refused(jobs) => jobs.into_iter().for_each(|job| self.pass_on(job)),
        }
    }

    /// The loop's thread: the signal is no longer watched, the loop still runs. Queued jobs
    /// are delivered now, later ones through the forwarder.
    fn stop_watching(self: &Arc<Self>, py: Python<'_>) -> PyResult<()> {
        // The queued jobs' wake-up is this drain.
        let _ = self.queue.stop_watching();
        self.drain(py)
    }

    /// The loop is gone: jobs are dropped, dependents end.
    pub(crate) fn die(&self, py: Python<'_>) {
        self.retired.store(true, Ordering::Release);
        drop(self.queue.die());
        for dependent in self.take_dependents().iter().filter_map(Weak::upgrade) {
            dependent.loop_died(py);
        }
    }

    /// The dependents registered so far, taken out (by a death or a succession, after the
    /// queue died: a later [`depend`](Home::depend) sees that, and never lands here).
    fn take_dependents(&self) -> Vec<Weak<dyn Dependent>> {
        std::mem::take(
            &mut self
                .dependents
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .list,
        )
    }

    /// Reports the Python objects the home holds to the cyclic collector (the loop, its
    /// thread-safe entry point, the backend's record of it and stand-ins), for `home`'s
    /// owner, if it is the sole owner: the home's references are that owner's alone then.
    ///
    /// Why the sole owner only: with other owners (a suspended coroutine, a `PyFuture` on
    /// another thread), claiming the references would let the collector tear down a loop that
    /// is still reachable through Rust, and two owners claiming them would claim them twice.
    /// The cycle is reported once the others are gone.
    ///
    /// A new owner comes from an existing one, or from the registry, which is read attached
    /// while the collector runs with the interpreter held. One exception: a wake-up delivered
    /// from a detached thread clones the home from the `WakeupFuture` it holds. That reference
    /// is one the collector cannot see, so the future, and the loop through it, stay
    /// reachable; only if the clone falls between the collector's two passes over the future
    /// (the count read as one, then as two) can the loop look unreachable for that collection.
    /// Such a loop is not running (a running loop is referenced from its thread) and is
    /// referenced by nothing but the home: it is cleared, not freed, and the wake-up's job,
    /// which the home then refuses or hands to a loop that raises, is its last user.
    pub(crate) fn traverse_as_sole_owner<V: Visit>(
        home: &Arc<Self>,
        visit: &V,
    ) -> Result<(), V::Error> {
        if Arc::strong_count(home) != 1 {
            return Ok(());
        }
        visit.visit(&home.event_loop)?;
        visit.visit(&home.threadsafe)?;
        if let Some(record) = &home.record {
            visit.visit(record)?;
        }
        // They hold the loop: a cycle through the home, as the record's.
        if let Some(Some((resolved, cancelled))) = home.stand_ins.get() {
            visit.visit(resolved)?;
            visit.visit(cancelled)?;
        }
        // A successor that only this home holds (its loop let go of it too) is this
        // owner's as well.
        if let Some(successor) = home.successor.get() {
            Self::traverse_as_sole_owner(successor, visit)?;
        }
        Ok(())
    }

    /// The watched end of the signal, as a file descriptor (or socket) number.
    pub(crate) fn watched_fd(&self) -> i64 {
        self.signal.watched()
    }
}

impl Keyed for Home {
    fn key(&self) -> &Py<PyAny> {
        &self.event_loop
    }

    /// A dead home is held on by what it served, but a loop that runs on after it (the
    /// program took away its reader or keeper) gets a new one.
    fn retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }
}

thread_local! {
    static LAST_HOME: RefCell<Weak<Home>> = const { RefCell::new(Weak::new()) };
}

static HOMES: Registry<Home> = Registry::new(&LAST_HOME);

/// What a backend gives a new home of its loop.
pub(crate) struct Parts<'py> {
    /// The loop's thread-safe entry point (`call_soon_threadsafe`, `run_sync_soon`): how the
    /// forwarder reaches it.
    pub(crate) threadsafe: Bound<'py, PyAny>,
    /// The backend's Python-side record of the loop, kept as long as the home.
    pub(crate) record: Option<Bound<'py, PyAny>>,
    /// How the loop is carried on when it lets go of the home while it runs on (see
    /// [`Home::lost`]); `None` where a loop cannot outlive its home (a trio run).
    pub(crate) succession: Option<&'static Succession>,
}

/// The homes alive now (one per loop or trio run that pyo3-async serves), and the jobs each
/// has waiting for its loop's thread.
pub(crate) fn census() -> Vec<usize> {
    HOMES.live().iter().map(|home| home.queue.len()).collect()
}

/// The home of `event_loop` (an asyncio loop, or a trio token), and whether it was created
/// now: a new home is not watched yet; `parts` makes what a new one needs.
pub(crate) fn find_or_create<'py>(
    event_loop: &Bound<'py, PyAny>,
    parts: impl FnOnce(Option<&Home>) -> PyResult<Parts<'py>>,
) -> PyResult<(Arc<Home>, bool)> {
    HOMES.find_or_create(event_loop, |predecessor| {
        crate::exit_guard::install(event_loop.py());
        crate::fork::watch();
        crate::thread_state::note_interpreter(event_loop.py());
        let Parts {
            threadsafe,
            record,
            succession,
        } = parts(predecessor.as_deref())?;
        Home::new(
            event_loop.clone().unbind(),
            threadsafe.unbind(),
            record.map(Bound::unbind),
            succession,
        )
        .map_err(|err| {
            pyo3::exceptions::PyOSError::new_err(format!("cannot create a wake signal: {err}"))
        })
    })
}

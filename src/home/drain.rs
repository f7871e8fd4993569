//! [`Drain`]: the callable a loop runs, on its thread, to drain its home's queue. The one the
//! loop keeps for its whole life (its reader of the home's signal, or a timer due in
//! decades) also tells of the loop's death, by being let go of.
//!
//! | role | kept by | its release means |
//! |---|---|---|
//! | **once** | the loop's thread-safe queue, for one drain (the forwarder's) | nothing |
//! | **watcher** | the loop's reader of the home's signal (`add_reader`, trio's system task) | the loop died, while it still watched (trio lets go of it earlier, when it cancels its system tasks: the home no longer watches then) |
//! | **keeper** | a timer of an asyncio loop that cannot watch (no `add_reader`: the Proactor loop, custom loops), due in some 34 years | the loop closed (`close()` drops its timers), or was collected; unless it fired (a virtual clock moved on to it): it is a once-drain then |
//!
//! Why a keeper: a loop that cannot watch would otherwise learn of its own death only when the
//! next job is forwarded to it. Until then, whatever was parked on it (a coroutine whose future
//! only it can wake, a queued wake-up) would keep the home, and the home the loop, for good.
//! Why not due at infinity: a loop that moves its clock on to its next timer when idle (the
//! virtual clocks of test suites) would jump to infinity, and never fire another timer.
//!
//! A loop can also let go of them while it runs on, if the program takes away the watcher
//! (`remove_reader`) or the keeper (cancels the timer). That is no death: the home hands over
//! to a successor that watches the loop again ([`Home::lost`]). Where the loop is open but
//! not running (between two runs), it gets no successor: a task parked then is resumed
//! (`Parker::resume_after_loss`), and a coroutine that must wait again moves to the loop's
//! new home (`Parker::rehome`) rather than wait for wake-ups that nobody delivers.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};

use super::forwarder::Forward;
use super::queue::Route;
use super::Home;
use crate::glue;

/// The callable a loop runs to drain its home's queue (see the [module](self)).
#[pyclass(frozen)]
pub(crate) struct Drain {
    home: Arc<Home>,
    /// A [`DrainRole`]: a keeper is made as a once-drain and becomes a keeper only once the
    /// loop took it ([`arm`](Drain::arm)), so that one the loop refused dies harmlessly.
    role: AtomicU8,
}

/// Who keeps a [`Drain`], and what its release means (see the [module](self)).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum DrainRole {
    Once,
    Watcher,
    Keeper,
}

impl Drain {
    fn role(&self) -> DrainRole {
        match self.role.load(Ordering::Relaxed) {
            1 => DrainRole::Watcher,
            2 => DrainRole::Keeper,
            _ => DrainRole::Once,
        }
    }
}

impl Home {
    /// The callable the loop runs to drain the queue, for `role`.
    pub(crate) fn drain_callable(
        self: &Arc<Self>,
        py: Python<'_>,
        role: DrainRole,
    ) -> PyResult<Py<Drain>> {
        Py::new(
            py,
            Drain {
                home: Arc::clone(self),
                role: AtomicU8::new(role as u8),
            },
        )
    }

    /// A drain for the loop to keep as the callback of a timer due in decades (see the
    /// [module](self)): made as a once-drain, a keeper once the loop took it (`arm()`).
    pub(crate) fn keeper_drain(self: &Arc<Self>, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.drain_callable(py, DrainRole::Once)?.into_any())
    }
}

#[pymethods]
impl Drain {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        // A keeper fired after all (a clock that was moved on by decades): the loop lets go of
        // it now, which is no death.
        let _ = self.role.compare_exchange(
            DrainRole::Keeper as u8,
            DrainRole::Once as u8,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.home.drain(py)
    }

    /// The loop cannot watch the signal (no `add_reader`), or stops watching it while it
    /// still runs (trio cancels its system tasks before its last tasks finish).
    fn unwatchable(&self, py: Python<'_>) -> PyResult<()> {
        self.home.stop_watching(py)
    }

    /// A keeper of the home, for a timer of the loop due in decades (an asyncio loop that
    /// cannot watch: see the [module](self)); unarmed until the loop took it.
    fn keeper(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.home.keeper_drain(py)
    }

    /// The loop took this keeper: letting go of it is the loop's death from now on.
    fn arm(&self) {
        self.role.store(DrainRole::Keeper as u8, Ordering::Relaxed);
    }

    /// The loop is gone for good (a trio run ended: its `after_run` instrument hook).
    fn died(&self, py: Python<'_>) {
        self.home.die(py);
    }

    /// The loop holds its watcher or keeper, and that one's home holds the loop: a cycle
    /// through Rust, which the collector sees only if the drain reports the home's objects.
    /// Then a loop dropped without `close()` is collected like any other (its finalizer
    /// closes it, which lets go of the drain: the home dies). Reported while the drain is the
    /// home's sole owner (see [`Home::traverse_as_sole_owner`]).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if self.role() != DrainRole::Once {
            Home::traverse_as_sole_owner(&self.home, &visit)?;
        }
        Ok(())
    }
}

impl Drop for Drain {
    /// The loop let go of its watcher without saying it stops watching, or of its keeper: it
    /// closed (asyncio) or the run ended (trio).
    fn drop(&mut self) {
        let died = match self.role() {
            DrainRole::Once => false,
            DrainRole::Watcher => self.home.queue.route() == Route::Signal,
            DrainRole::Keeper => self.home.queue.route() != Route::Dead,
        };
        if died {
            Python::try_attach(|py| {
                // Maybe released by a call that is raising (the drain's own, which removed
                // its reader and then failed): the exception must survive the Python calls
                // of the hand-over, as it does a finaliser's.
                let raising = PyErr::take(py);
                self.home.lost(py);
                if let Some(raising) = raising {
                    raising.restore(py);
                }
            });
        }
    }
}

impl Forward for Home {
    /// The forwarder's thread, attached: asks the loop to drain the queue. A loop that refuses
    /// (closed, run finished) is dead. The thread runs no Python code of its own, so the
    /// call is made from a Python frame (see [`glue::call_in_a_frame`]).
    fn forward(self: Arc<Self>, py: Python<'_>) {
        let asked = self
            .drain_callable(py, DrainRole::Once)
            .and_then(|drain| glue::call_in_a_frame(py)?.call1((self.threadsafe.bind(py), drain)));
        if asked.is_err() {
            self.die(py);
        }
    }
}

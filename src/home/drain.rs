//! [`Drain`]: the callable a loop runs, on its thread, to drain its home's queue; the one the
//! loop keeps while it watches the home's signal (the *watcher*) also tells of the loop's death.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};

use super::queue::Route;
use super::Home;

/// The callable a loop runs to drain its home's queue.
#[pyclass(frozen)]
pub(crate) struct Drain {
    home: Arc<Home>,
    /// Whether the loop keeps this one for as long as it watches the signal.
    watching: bool,
}

impl Home {
    /// The callable the loop runs to drain the queue. The watcher (`watching`) is the one the
    /// loop keeps for as long as it watches the signal: the loop letting go of it is its death.
    pub(crate) fn drain_callable(
        self: &Arc<Self>,
        py: Python<'_>,
        watching: bool,
    ) -> PyResult<Py<Drain>> {
        Py::new(
            py,
            Drain {
                home: Arc::clone(self),
                watching,
            },
        )
    }
}

#[pymethods]
impl Drain {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        self.home.drain(py)
    }

    /// The loop cannot watch the signal (no `add_reader`), or stops watching it while it
    /// still runs (trio cancels its system tasks before its last tasks finish).
    fn unwatchable(&self, py: Python<'_>) -> PyResult<()> {
        self.home.stop_watching(py)
    }

    /// The loop is gone for good (a trio run ended: its `after_run` instrument hook).
    fn died(&self, py: Python<'_>) {
        self.home.die(py);
    }

    /// The loop holds its watcher (through its reader callback) and the watcher's home holds
    /// the loop: a cycle through Rust, which the collector sees only if the watcher reports
    /// the home's objects. Then a loop dropped without `close()` is collected like any other
    /// (its finalizer closes it, which lets go of the watcher: the home dies). Reported while
    /// the watcher is the home's sole owner (see [`Home::traverse_as_sole_owner`]).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if self.watching {
            Home::traverse_as_sole_owner(&self.home, &visit)?;
        }
        Ok(())
    }
}

impl Drop for Drain {
    /// The loop let go of its watcher without saying it stops watching: it closed (asyncio)
    /// or the run ended (trio).
    fn drop(&mut self) {
        if self.watching && self.home.queue.route() == Route::Signal {
            Python::try_attach(|py| self.home.die(py));
        }
    }
}

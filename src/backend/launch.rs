//! Starting a [`Launch`] on its loop's backend: the stages and invariants are the launch's
//! (`task::launch`); this is where they are carried out.

use pyo3::prelude::*;

use crate::backend::{asyncio, closed, trio, Backend};
use crate::task::Launch;

impl Launch<'_> {
    /// Starts the awaitable as a task (asyncio) or system task (trio) of the loop, whose
    /// framework is `backend`. Called on the loop's thread while it runs (a job of its home,
    /// a step of one of its tasks). An awaitable that does not start is closed; the error is
    /// also the completion's unless it resolved already.
    pub(crate) fn start(self, backend: Backend) -> PyResult<()> {
        let py = self.awaitable.py();
        if self.slot.cancel_requested() {
            // Rust dropped the `PyFuture` before the work started: nobody listens.
            self.close_unstarted();
            self.completion.get().cancelled_before_start();
            return Ok(());
        }
        // The loop runs (this is its thread), so it is not closed; its home may have died.
        let started = if self.home.is_dead() {
            Err(closed())
        } else {
            self.completion.get().depend_on(py, &self.home);
            match backend {
                Backend::Asyncio => asyncio::start(&self),
                Backend::Trio => trio::start(&self),
            }
        };
        if let Err(err) = &started {
            self.close_unstarted();
            self.completion.get().complete(Err(err.clone_ref(py)));
        }
        started
    }
}

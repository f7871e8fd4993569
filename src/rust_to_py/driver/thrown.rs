//! An exception thrown into a coroutine (`throw`), or delivered by its loop at a resumption:
//! where it goes (the delegated awaitable, the future's cancel handle, or out of the
//! coroutine), and what it becomes on the way out (PEP 479).

use pyo3::prelude::*;

use crate::delegation::Input;
use crate::rust_to_py::driver::{Driver, Owner, Stepped};
use crate::rust_to_py::errors::thrown_out;
use crate::rust_to_py::future_cell::DriverFlags;

impl Driver {
    pub(crate) fn throw(&mut self, py: Python<'_>, owner: &Owner, exception: PyErr) -> Stepped {
        self.check_not_finished()?;
        let started = self.started();
        self.set_started();
        if self.rare.has_delegate() {
            // Raised at the delegated await, as Python's `await` does; the future sees the
            // outcome through its `PyFuture` (and its cancel handle, if it has one).
            if let Some(cancellation) = self.rare.cancellation() {
                cancellation.deliver(exception.clone_ref(py));
            }
            return self.run(py, owner, Some(Input::Throw(exception)));
        }
        if let Some(parker) = &mut self.parker {
            parker.abandon(py);
        }
        self.deliver(py, owner, exception, started)
    }

    /// An exception reached the suspension point (before the first step, when not `started`):
    /// it ends the coroutine, or, when the future handles cancellation itself, goes to its
    /// [`CancelHandle`](crate::CancelHandle).
    pub(super) fn deliver(
        &mut self,
        py: Python<'_>,
        owner: &Owner,
        exception: PyErr,
        started: bool,
    ) -> Stepped {
        match self.rare.cancellation() {
            Some(cancellation) => {
                self.future.flags.set(DriverFlags::CANCEL_DELIVERED, true);
                cancellation.deliver(exception);
                self.run(py, owner, None)
            }
            None => {
                self.finish(py, owner.waiter());
                self.future.flags.set(DriverFlags::RETHROWN, true);
                // Raised before the first step it stays as it is, as 3.14 raises it.
                match started {
                    true => Err(thrown_out(py, Box::new(exception), self.is_step())),
                    false => Err(Box::new(exception)),
                }
            }
        }
    }
}

//! What is read of a driver without moving it: by Python's tools (`cr_frame`, `cr_await`,
//! `cr_suspended`) and by the garbage collector (`tp_traverse`).

use pyo3::prelude::*;

use crate::rust_to_py::driver::Driver;
use crate::rust_to_py::future_cell::DriverFlags;
use crate::visit::Visit;
use crate::waker::Waiter;

impl Driver {
    /// Whether the future has finished (returned, raised, was closed or cancelled).
    pub(crate) fn is_finished(&self) -> bool {
        self.future.is_empty()
    }

    /// Whether the coroutine is an async generator's step (`__anext__`, `asend`, `athrow` or
    /// `aclose`).
    pub(crate) fn is_step(&self) -> bool {
        self.future.flags.has(DriverFlags::STEP)
    }

    /// Whether the coroutine was started and has not finished: it waits on its loop.
    pub(crate) fn is_suspended(&self) -> bool {
        self.started() && !self.is_finished()
    }

    /// What the coroutine awaits now, as `cr_await` shows it: the awaitable it delegates to,
    /// else what its task is parked on.
    pub(crate) fn awaiting(&self) -> Option<&Py<PyAny>> {
        match (self.rare.delegate(), &self.parker) {
            (Some(delegate), _) => Some(delegate.awaiting()),
            (None, Some(parker)) => parker.awaiting(),
            (None, None) => None,
        }
    }

    /// The frame owner, made by `make` on first use; `None` before the coroutine starts and
    /// once it has finished (a finished coroutine has no frame).
    ///
    /// Not before the start: trio runs a coroutine that has a frame as its task's own, and
    /// trio's Ctrl-C rules look for the task's frame among the live frames. A Rust coroutine's
    /// frame is never live, so Python code that its future runs would count as trio's runner
    /// (protected), and a `KeyboardInterrupt` would wait for the next checkpoint. Without a
    /// frame at spawn time, trio wraps the coroutine in an `async def` whose frame is live.
    pub(crate) fn frame_owner(
        &mut self,
        make: impl FnOnce() -> PyResult<Py<PyAny>>,
    ) -> PyResult<Option<&Py<PyAny>>> {
        if !self.started() || self.is_finished() {
            return Ok(None);
        }
        if self.rare.frame_owner().is_none() {
            self.rare.set_frame_owner(Some(make()?));
        }
        Ok(self.rare.frame_owner())
    }

    /// Drops the frame owner: the next `frame_owner` makes a new one.
    pub(crate) fn forget_frame_owner(&mut self) {
        self.rare.set_frame_owner(None);
    }

    /// Reports to the garbage collector the Python objects that this coroutine alone holds for
    /// its current suspension: the future its asyncio task waits for (which holds the task
    /// through its done-callback, and the task holds the coroutine), a delegated awaitable's
    /// iterator, and the wake-up's future when `unshared` is the coroutine's waiter, which no
    /// waker of the Rust future can reach any more (see [`Waiter::parked_wakeup`]). A
    /// forgotten task parked on a Rust coroutine is then a cycle the collector can see, as a
    /// native one is.
    ///
    /// What the Rust future itself holds stays invisible: an argument it captured, or a waker
    /// it keeps in its own state, is a reference the collector counts as external.
    pub(crate) fn traverse<V: Visit>(
        &self,
        visit: &V,
        unshared: Option<&Waiter>,
    ) -> Result<(), V::Error> {
        if let Some(parker) = &self.parker {
            parker.traverse(visit)?;
        }
        if let Some(delegate) = self.rare.delegate() {
            delegate.traverse(visit)?;
        }
        if let Some(owner) = self.rare.frame_owner() {
            visit.visit(owner)?;
        }
        if let Some(waiter) = unshared {
            waiter
                .parked_wakeup(|wakeup| wakeup.traverse(visit))
                .unwrap_or(Ok(()))?;
        }
        Ok(())
    }
}

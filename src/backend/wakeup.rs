//! A wake-up: what a waker must do to get a parked task running again, delivered from any
//! thread without ever waiting for the interpreter.

use std::sync::Arc;

use pyo3::prelude::*;

use super::{asyncio, trio, Backend};
use crate::exit_guard::thread_is_attached;
use crate::home::{reraise, Home};
use crate::visit::Visit;

/// What a waker must do to get a parked task running again.
pub(crate) enum Wakeup {
    Asyncio(asyncio::Wakeup),
    Trio(trio::Wakeup),
}

impl Wakeup {
    /// Reports the wake-up's Python objects, for a waiter that no waker can reach any more:
    /// asyncio's future (a trio wake-up holds the task, which trio's runner holds anyway).
    pub(crate) fn traverse<V: Visit>(&self, visit: &V) -> Result<(), V::Error> {
        match self {
            Wakeup::Asyncio(wakeup) => wakeup.traverse(visit),
            Wakeup::Trio(_) => Ok(()),
        }
    }

    /// Delivers the wake-up, from any thread, without ever waiting for the interpreter: at
    /// once on the thread that runs the loop now (attached already, so attaching only counts),
    /// else through the loop's home. A dead loop has nobody left to wake.
    pub(crate) fn deliver(self) {
        let home = match &self {
            Wakeup::Asyncio(wakeup) => Arc::clone(wakeup.home()),
            Wakeup::Trio(wakeup) => Arc::clone(wakeup.home()),
        };
        let undelivered = if thread_is_attached() {
            Python::attach(|py| self.deliver_if_here(py, &home))
        } else {
            Some(self)
        };
        if let Some(wakeup) = undelivered {
            home.run(Box::new(move |py| wakeup.deliver_here(py)));
        }
    }

    /// On an attached thread: delivers at once if it runs the loop now, else hands the
    /// wake-up back for the home's queue.
    ///
    /// Pending signal handlers run first, before any Python call of the delivery (see
    /// `Home::drain`): one that raised inside asyncio's `call_soon`, after the future was
    /// marked done, would lose the wake-up. Their exception has no caller here (a waker
    /// returns nothing): it is raised again where CPython would have raised it
    /// ([`reraise`](crate::home::reraise)), and the wake-up takes the home's queue, whose
    /// drain raises it first.
    fn deliver_if_here(self, py: Python<'_>, home: &Arc<Home>) -> Option<Self> {
        if let Err(raised) = py.check_signals() {
            home.raise_soon(raised);
            return Some(self);
        }
        if reraise::pending() {
            return Some(self);
        }
        let backend = match &self {
            Wakeup::Asyncio(_) => Backend::Asyncio,
            Wakeup::Trio(_) => Backend::Trio,
        };
        if !backend.running_here(py, home) {
            return Some(self);
        }
        if let Err(raised) = self.deliver_here(py) {
            // A signal that arrived during the delivery itself: delivered all the same (see
            // `deliver_here`), its exception raised again as above.
            home.raise_soon(raised);
        }
        None
    }

    /// On the loop's thread. Errors that mean "nobody waits any more" are swallowed; an
    /// interrupt (`KeyboardInterrupt`) still delivers the wake-up, then propagates.
    fn deliver_here(self, py: Python<'_>) -> PyResult<()> {
        match self {
            Wakeup::Asyncio(wakeup) => wakeup.deliver_here(py),
            Wakeup::Trio(wakeup) => wakeup.deliver_here(py),
        }
    }
}

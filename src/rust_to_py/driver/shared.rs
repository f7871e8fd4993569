//! The one allocation behind a coroutine: its waker state, its driver and, at the driver's
//! end, the future itself.
//!
//! A waker of the future is a reference to this allocation, so parking allocates nothing: a
//! pending coroutine is its Python object, this block, and what its loop keeps of the
//! suspension. The block has three kinds of owners, each for its own reason:
//!
//! | owner | holds it | why |
//! |---|---|---|
//! | the coroutine object | strongly, for its whole life | it is the coroutine's state |
//! | a waker (kept by the future, a timer, a channel, another thread) | strongly | a wake must find the waiter, whenever it comes |
//! | the home of the coroutine's loop, trio's abort function | weakly | a dead coroutine has nothing left to finish or to abort |
//!
//! Invariant: whatever holds Python objects (the future, the parker, the delegate, the
//! cancellation) goes when the coroutine object goes, attached, even if a waker keeps the block
//! alive longer ([`Coroutine`](crate::Coroutine)'s destructor releases the driver). What a
//! late waker drops with the block is Python-free.

use std::sync::{Arc, Weak};
use std::task::{Wake, Waker};

use pyo3::prelude::*;

use crate::backend::Abort;
use crate::gil_cell::GilCell;
use crate::home::Dependent;
use crate::rust_to_py::driver::{Driver, SharedDriver};
use crate::rust_to_py::future_cell::DriverFlags;
use crate::rust_to_py::pollable::PyPoll;
use crate::waker::Waiter;

/// The coroutine's allocation, created for the future's own type `F`.
pub(crate) struct Shared<F: ?Sized> {
    waiter: Waiter,
    cell: GilCell<Driver<F>>,
}

impl<F: PyPoll + 'static> Shared<F> {
    pub(crate) fn new(driver: Driver<F>) -> Self {
        Shared {
            waiter: Waiter::new(),
            cell: GilCell::new(driver),
        }
    }
}

impl<F: PyPoll + 'static> SharedDriver for Shared<F> {
    fn cell(&self) -> &GilCell<Driver> {
        &self.cell
    }

    fn waiter(&self) -> &Waiter {
        &self.waiter
    }

    fn get_mut(&mut self) -> &mut Driver {
        self.cell.get_mut()
    }

    fn dependent(self: Arc<Self>) -> Weak<dyn Dependent> {
        Arc::<Self>::downgrade(&self)
    }

    fn abort_handle(self: Arc<Self>) -> Weak<dyn Abort> {
        Arc::<Self>::downgrade(&self)
    }

    fn into_waker(self: Arc<Self>) -> Waker {
        Waker::from(self)
    }
}

impl<F: PyPoll + 'static> Wake for Shared<F> {
    fn wake(self: Arc<Self>) {
        self.waiter.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.waiter.wake();
    }
}

impl<F: PyPoll + 'static> Abort for Shared<F> {
    /// trio asks on its own thread while the task is parked, so the driver is usually free: a
    /// driver found busy (driven from elsewhere meanwhile) keeps the wait, as a future that
    /// handles cancellation itself does, unless the waiter is closed (see `Waiter::abort`).
    fn abort(&self, py: Python<'_>) -> bool {
        self.waiter.abort(|| match self.cell.try_borrow_mut(py) {
            Some(driver) => driver.future.flags.has(DriverFlags::CANCEL_DELIVERED),
            None => true,
        })
    }
}

impl<F: PyPoll + 'static> Dependent for Shared<F> {
    /// The loop the coroutine is bound to died: the coroutine finishes, or its task is
    /// resumed where the loop still runs (see [`Driver::loop_died`]).
    fn loop_died(&self, py: Python<'_>) {
        // Locked: it is running right now, so its loop is not dead after all.
        if let Some(mut driver) = self.cell().try_borrow_mut(py) {
            driver.loop_died(py, &self.waiter);
        }
    }
}

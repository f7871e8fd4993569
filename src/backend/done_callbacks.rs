//! [`DoneCallbacks`]: the done-callbacks of a pending [`WakeupFuture`](super::wakeup_future),
//! in the order they were added.
//!
//! In practice there is one, the task's wake-up: only Python code that picks up
//! `task._fut_waiter` adds more. So the first is held inline and the rest behind one word,
//! which stays empty until then (a `Vec` would cost three words for every parked task).
//!
//! Invariants: the list is only changed with the future's state borrowed, and no Python code
//! runs meanwhile; a callback leaves the list only to be scheduled or dropped, and it is
//! dropped by the caller once the state is released (a callback's finaliser may run anything).

use pyo3::prelude::*;

use crate::visit::Visit;

/// A done-callback and the context it runs in.
pub(super) struct Callback {
    pub(super) function: Py<PyAny>,
    pub(super) context: Py<PyAny>,
}

/// The callbacks of a pending future (see the [module](self)).
#[derive(Default)]
pub(super) struct DoneCallbacks {
    first: Option<Callback>,
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<Callback>>>,
}

impl DoneCallbacks {
    pub(super) fn push(&mut self, callback: Callback) {
        if self.first.is_none() {
            self.first = Some(callback);
        } else {
            self.more
                .get_or_insert_with(Default::default)
                .push(callback);
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Callback> {
        self.first
            .iter()
            .chain(self.more.iter().flat_map(|more| more.iter()))
    }

    /// Empties the list, handing its callbacks over in order.
    pub(super) fn take(&mut self) -> impl Iterator<Item = Callback> {
        let (first, more) = (self.first.take(), self.more.take());
        first
            .into_iter()
            .chain(more.into_iter().flat_map(|more| *more))
    }

    /// Removes the callbacks whose function is one of `functions` (by identity), keeping the
    /// order of the others; returns the removed ones, for the caller to drop once the state
    /// is released.
    pub(super) fn remove(&mut self, functions: &[*mut pyo3::ffi::PyObject]) -> Vec<Callback> {
        let (removed, kept): (Vec<Callback>, Vec<Callback>) = self
            .take()
            .partition(|callback| functions.contains(&callback.function.as_ptr()));
        for callback in kept {
            self.push(callback);
        }
        removed
    }

    /// Reports each callback's function and context (the function is the task's wake-up, a
    /// bound method: it holds the task, which holds the future).
    pub(super) fn traverse<V: Visit>(&self, visit: &V) -> Result<(), V::Error> {
        for callback in self.iter() {
            visit.visit(&callback.function)?;
            visit.visit(&callback.context)?;
        }
        Ok(())
    }
}

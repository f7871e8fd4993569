//! The future of a coroutine, stored in place and dropped when the coroutine finishes.

use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;

use crate::rust_to_py::pollable::PyPoll;

/// A future kept inside the coroutine's own allocation (the driver is created for the
/// future's type and used unsized), so it never moves, and dropped exactly once: when the
/// coroutine finishes, or with the coroutine.
pub(crate) struct FutureCell<F: ?Sized> {
    empty: bool,
    future: ManuallyDrop<F>,
}

impl<F> FutureCell<F> {
    pub(crate) fn new(future: F) -> Self {
        FutureCell {
            empty: false,
            future: ManuallyDrop::new(future),
        }
    }
}

impl<F: ?Sized> FutureCell<F> {
    pub(crate) fn is_empty(&self) -> bool {
        self.empty
    }

    /// Drops the future (once), catching a panic of its destructor: it must not unwind into
    /// Python's deallocator, and the coroutine is finished either way.
    pub(crate) fn clear(&mut self) {
        if !std::mem::replace(&mut self.empty, true) {
            // SAFETY: `empty` was false, so the future is initialised, and it is now marked
            // dropped before dropping starts: it is never touched again, even if its
            // destructor panics.
            let drop_future = || unsafe { ManuallyDrop::drop(&mut self.future) };
            let _ = panic::catch_unwind(AssertUnwindSafe(drop_future));
        }
    }
}

impl FutureCell<dyn PyPoll> {
    /// The future, unless the coroutine finished.
    pub(crate) fn pinned(&mut self) -> Option<Pin<&mut dyn PyPoll>> {
        if self.empty {
            return None;
        }
        // SAFETY: the future is initialised (`empty` is false) and never moves: this unsized
        // cell cannot be moved out from behind a reference, it only exists inside the
        // coroutine's `Arc`, and the future is dropped in place (`clear`), never taken out.
        Some(unsafe { Pin::new_unchecked(&mut *self.future) })
    }
}

impl<F: ?Sized> Drop for FutureCell<F> {
    fn drop(&mut self) {
        self.clear();
    }
}

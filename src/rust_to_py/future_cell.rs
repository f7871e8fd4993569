//! The future of a coroutine, stored in place and dropped when the coroutine finishes, and
//! the driver's flags beside it.

use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;

use crate::backend::Backend;
use crate::rust_to_py::pollable::PyPoll;

/// A future kept inside the coroutine's own allocation (the driver is created for the
/// future's type and used unsized), so it never moves, and dropped exactly once: when the
/// coroutine finishes, or with the coroutine.
///
/// The driver's flags ride in the cell's first byte: the future is the driver's last field,
/// placed at its own alignment, so a byte here is often free where a flag among the driver's
/// pointer-sized fields would cost a word.
pub(crate) struct FutureCell<F: ?Sized> {
    pub(crate) flags: DriverFlags,
    future: ManuallyDrop<F>,
}

impl<F> FutureCell<F> {
    pub(crate) fn new(future: F, backend: Option<Backend>) -> Self {
        let mut flags = DriverFlags(0);
        flags.set_backend(backend);
        FutureCell {
            flags,
            future: ManuallyDrop::new(future),
        }
    }
}

impl<F: ?Sized> FutureCell<F> {
    pub(crate) fn is_empty(&self) -> bool {
        self.flags.has(DriverFlags::EMPTY)
    }

    /// Drops the future (once), catching a panic of its destructor: it must not unwind into
    /// Python's deallocator, and the coroutine is finished either way.
    pub(crate) fn clear(&mut self) {
        if !self.is_empty() {
            self.flags.set(DriverFlags::EMPTY, true);
            // SAFETY: `EMPTY` was clear, so the future is initialised, and it is now marked
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
        if self.is_empty() {
            return None;
        }
        // SAFETY: the future is initialised (`EMPTY` is clear) and never moves: this unsized
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

/// The driver's flags, two bytes: whether the future is gone (the cell's own), whether the
/// coroutine started, whether the home of its loop knows it, whether the last step's
/// exception was the one thrown in, the backend fixed for it (if any), whether the future
/// was told about a cancellation (it handles cancellation itself, through its
/// [`CancelHandle`](crate::CancelHandle): later cancellations must not abort the wait, the
/// future decides when it ends), whether the waiter was used, whether the coroutine is
/// quiet when dropped unstarted, and whether it is a generator's step (its other two flags ride in its label's word).
#[derive(Clone, Copy)]
pub(crate) struct DriverFlags(u16);

impl DriverFlags {
    const EMPTY: u16 = 1;
    pub(crate) const STARTED: u16 = 1 << 1;
    pub(crate) const REGISTERED: u16 = 1 << 2;
    pub(crate) const RETHROWN: u16 = 1 << 3;
    const ASYNCIO: u16 = 1 << 4;
    const TRIO: u16 = 1 << 5;
    pub(crate) const CANCEL_DELIVERED: u16 = 1 << 6;
    /// Dropped unstarted, it does not warn "never awaited" (an async generator's step, the
    /// crate's own helpers).
    pub(crate) const QUIET: u16 = 1 << 7;
    /// The waiter may have left its initial state: a waker was made, a wake arrived during a
    /// poll, or the task parked (see `PollWaker::run`).
    pub(crate) const WAITER_USED: u16 = 1 << 8;
    /// An async generator's step (`__anext__`, `asend`, `athrow`, `aclose`): as a native
    /// generator's, `__await__` returns it again until it finished (see `Coroutine::__await__`).
    pub(crate) const STEP: u16 = 1 << 9;

    pub(crate) fn has(self, flag: u16) -> bool {
        self.0 & flag != 0
    }

    pub(crate) fn set(&mut self, flag: u16, on: bool) {
        if on {
            self.0 |= flag;
        } else {
            self.0 &= !flag;
        }
    }

    pub(crate) fn backend(self) -> Option<Backend> {
        if self.has(Self::ASYNCIO) {
            Some(Backend::Asyncio)
        } else if self.has(Self::TRIO) {
            Some(Backend::Trio)
        } else {
            None
        }
    }

    pub(crate) fn set_backend(&mut self, backend: Option<Backend>) {
        self.set(Self::ASYNCIO, backend == Some(Backend::Asyncio));
        self.set(Self::TRIO, backend == Some(Backend::Trio));
    }
}

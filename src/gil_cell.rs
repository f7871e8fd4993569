//! [`GilCell`]: state that only threads attached to the interpreter touch, borrowed without
//! atomic instructions.
//!
//! A coroutine's driver and a stream's slot are moved only by `send`, `throw`, `close`, the
//! garbage collector and a dying loop: all of them run attached. With a GIL, one thread is
//! attached at a time and attaching or detaching synchronises, so an ordinary flag tells a
//! re-entrant borrow (a coroutine resumed from inside its own poll, or while its poll runs
//! detached under `AllowThreads`) from a free one. A `Mutex` would say the same with two
//! locked instructions per borrow, which cost about 20 ns on a server CPU: an eighth of a
//! ready `await`, a quarter of an `async for` item.
//!
//! | flag | meaning | set by | cleared by |
//! |---|---|---|---|
//! | `false` | nobody borrows the value | [`GilCell::new`] | the borrow's guard, dropped |
//! | `true` | a [`GilGuard`] exists; the value is its alone | [`GilCell::try_borrow_mut`] | the guard's drop |
//!
//! Invariants: the flag is read and written only by attached threads (the borrow takes a
//! [`Python`] token, the guard is neither `Send` nor `Sync`, so it is dropped on the thread
//! that made it, which is attached again by then); the value is reached only through a guard,
//! or through `&mut GilCell`. On a free-threaded build (no GIL) the flag is an atomic: the
//! same rules, one locked instruction per borrow.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use pyo3::Python;

/// A value borrowed mutably, one borrower at a time, by threads attached to the interpreter.
pub(crate) struct GilCell<T: ?Sized> {
    borrowed: Flag,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard (exclusive, see the table above) or
// `&mut self`, so sharing the cell between threads shares no `&T`: `T: Send` is enough, as for
// `Mutex<T>`. The flag is a plain `Cell` only under a GIL, where its readers and writers are
// attached threads, which the interpreter's lock orders: no two touch it at once.
unsafe impl<T: ?Sized + Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub(crate) fn new(value: T) -> Self {
        GilCell {
            borrowed: Flag::new(),
            value: UnsafeCell::new(value),
        }
    }
}

impl<T: ?Sized> GilCell<T> {
    /// Borrows the value, or `None` while another borrow lives (on this thread further up the
    /// stack, or on a thread that detached while holding it).
    pub(crate) fn try_borrow_mut(&self, _attached: Python<'_>) -> Option<GilGuard<'_, T>> {
        // SAFETY: the token proves this thread is attached.
        unsafe { self.try_borrow_mut_attached() }
    }

    /// [`try_borrow_mut`](Self::try_borrow_mut) where no `Python` token may be had: inside
    /// `tp_traverse`, which PyO3 runs with attaching forbidden.
    ///
    /// # Safety
    /// The calling thread is attached (the collector runs attached).
    pub(crate) unsafe fn try_borrow_mut_attached(&self) -> Option<GilGuard<'_, T>> {
        if !self.borrowed.claim() {
            return None;
        }
        Some(GilGuard {
            cell: self,
            not_send: PhantomData,
        })
    }

    /// The value, through exclusive access to the cell: no flag involved.
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

/// The one borrow of a [`GilCell`]'s value; dropping it frees the cell.
pub(crate) struct GilGuard<'a, T: ?Sized> {
    cell: &'a GilCell<T>,
    /// Neither `Send` nor `Sync`: dropped where it was made, so the flag stays with attached
    /// threads (a `Python::detach` closure, which must be `Send`, cannot take it along).
    not_send: PhantomData<*mut ()>,
}

impl<T: ?Sized> Deref for GilGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard is the value's only borrower while it lives.
        unsafe { &*self.cell.value.get() }
    }
}

impl<T: ?Sized> DerefMut for GilGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`; `&mut self` makes this borrow unique.
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T: ?Sized> Drop for GilGuard<'_, T> {
    fn drop(&mut self) {
        self.cell.borrowed.release();
    }
}

/// Whether a borrow lives: a plain cell under the GIL.
#[cfg(not(Py_GIL_DISABLED))]
struct Flag(std::cell::Cell<bool>);

#[cfg(not(Py_GIL_DISABLED))]
impl Flag {
    fn new() -> Self {
        Flag(std::cell::Cell::new(false))
    }

    /// Takes the flag if it is free.
    fn claim(&self) -> bool {
        !self.0.replace(true)
    }

    fn release(&self) {
        self.0.set(false);
    }
}

/// Whether a borrow lives: without a GIL, attached threads run at once, so it is atomic.
#[cfg(Py_GIL_DISABLED)]
struct Flag(std::sync::atomic::AtomicBool);

#[cfg(Py_GIL_DISABLED)]
impl Flag {
    fn new() -> Self {
        Flag(std::sync::atomic::AtomicBool::new(false))
    }

    fn claim(&self) -> bool {
        !self.0.swap(true, std::sync::atomic::Ordering::Acquire)
    }

    fn release(&self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_borrow_at_a_time_and_free_again_after_it() {
        Python::attach(|py| {
            let cell = GilCell::new(1);
            let mut first = cell.try_borrow_mut(py).expect("a free cell lends");
            *first += 1;
            assert!(
                cell.try_borrow_mut(py).is_none(),
                "a second borrow is refused"
            );
            drop(first);
            assert_eq!(*cell.try_borrow_mut(py).expect("free again"), 2);
        });
    }

    #[test]
    fn a_panic_under_a_borrow_frees_the_cell() {
        Python::attach(|py| {
            let cell = GilCell::new(());
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _borrow = cell.try_borrow_mut(py);
                panic!("inside the borrow");
            }));
            assert!(caught.is_err());
            assert!(cell.try_borrow_mut(py).is_some());
        });
    }

    #[test]
    fn a_borrow_held_across_a_detach_keeps_other_threads_out() {
        Python::attach(|py| {
            let cell = GilCell::new(0);
            let borrow = cell.try_borrow_mut(py).expect("a free cell lends");
            let refused = py.detach(|| {
                std::thread::scope(|scope| {
                    scope
                        .spawn(|| Python::attach(|py| cell.try_borrow_mut(py).is_none()))
                        .join()
                })
            });
            assert!(matches!(refused, Ok(true)));
            drop(borrow);
        });
    }
}

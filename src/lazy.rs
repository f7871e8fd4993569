//! [`Lazy`]: a per-process value made on first use, attached, by code that may run Python.
//!
//! PyO3's `PyOnceLock` makes its value inside a `Once`, with the thread detached while it
//! waits, and a first use that re-enters its own making deadlocks (or panics): PyO3 documents
//! that as an error. Here it is not the caller's to avoid. Making a value runs Python code (an
//! import, a class, an allocation), any of which can start the cyclic collector, whose
//! finalisers may await a Rust coroutine or step a generator, which asks for the same value:
//! the thread then waited for itself for ever (round 10 found it with sniffio's import).
//!
//! So the value is made outside any lock, and only storing it is once-only: a first use that
//! is re-entered, or raced by another thread, makes the value again, and the first one stored
//! wins; the others are dropped unused (attached, so a Python reference among them is released
//! at once). What is made this way must be equivalent whichever copy wins: an imported
//! function, a glue module, a class made for the process. Nothing waits while making it, so
//! nothing detaches either.

use std::sync::OnceLock;

use pyo3::prelude::*;

/// A value made on first use, possibly more than once, stored once (see the [module](self)).
pub(crate) struct Lazy<T>(OnceLock<T>);

impl<T> Lazy<T> {
    pub(crate) const fn new() -> Self {
        Lazy(OnceLock::new())
    }

    /// The value, made by `make` if none is stored yet. A failure is not stored: the next use
    /// tries again.
    #[inline]
    pub(crate) fn get_or_try_init<E>(
        &self,
        _py: Python<'_>,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<&T, E> {
        match self.0.get() {
            Some(value) => Ok(value),
            None => self.make(make),
        }
    }

    /// The first use (or one of the first): makes the value, then stores it unless another
    /// was stored meanwhile.
    #[cold]
    fn make<E>(&self, make: impl FnOnce() -> Result<T, E>) -> Result<&T, E> {
        let made = make()?;
        // Inside the `Once`, only a move: nothing there runs Python code or waits for it.
        Ok(self.0.get_or_init(move || made))
    }

    /// The value, made by `make` if none is stored yet.
    #[inline]
    pub(crate) fn get_or_init(&self, py: Python<'_>, make: impl FnOnce() -> T) -> &T {
        match self.get_or_try_init(py, || Ok::<T, std::convert::Infallible>(make())) {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }
}

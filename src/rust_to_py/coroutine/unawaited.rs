//! CPython's "coroutine ... was never awaited", for Rust coroutines.

use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;

use crate::rust_to_py::coroutine::Coroutine;

impl Drop for Coroutine {
    /// CPython's `RuntimeWarning: coroutine '...' was never awaited`, for a coroutine that was
    /// never started or closed (awaited or not). The warning points at the Python code running when
    /// the coroutine is dropped: where a forgotten `await` drops it, the caller's line.
    ///
    /// A coroutine that ran and whose future still has a waker somewhere (a timer, a channel)
    /// finishes here, attached, rather than when that waker goes (see `Shared`).
    fn drop(&mut self) {
        // SAFETY: only `tp_iternext` gives a coroutine's address to the spare `StopIteration`,
        // and it runs on coroutines that are Python objects: those are dropped by their
        // deallocation, attached.
        #[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
        unsafe {
            crate::rust_to_py::stop_iteration::forget_result(self.address());
        }
        if Arc::strong_count(&self.driver) > 1 {
            // A waker lives on (only a poll makes one: the coroutine ran, it does not warn), or
            // a weak owner is finishing it right now, attached.
            let driver = &self.driver;
            crate::exit_guard::attach_unless_exiting(|py| {
                if let Some(mut cell) = driver.cell().try_borrow_mut(py) {
                    cell.release(py, driver.waiter());
                }
            });
            return;
        }
        if self.label.ran() {
            return;
        }
        // Never started: the driver's own flag says whether it stays quiet.
        let quiet =
            Arc::get_mut(&mut self.driver).is_none_or(|shared| !shared.get_mut().warns_unawaited());
        if quiet {
            return;
        }
        // Only where Python is running (a coroutine built and dropped by Rust code before the
        // interpreter exists, or while it exits, has nobody to tell).
        crate::exit_guard::attach_unless_exiting(|py| warn_unawaited(py, self.__qualname__()));
    }
}

/// Warns as CPython's `_PyErr_WarnUnawaitedCoroutine` does, from a destructor: the exception
/// being raised meanwhile, if any, is kept; a warning turned into an error (`-W error`) is
/// reported as unraisable, since a destructor has no caller to raise to.
#[cold]
fn warn_unawaited(py: Python<'_>, qualname: &str) {
    let raised = PyErr::take(py);
    let category = py.get_type::<pyo3::exceptions::PyRuntimeWarning>();
    // Through `warnings.warn`, which takes the message as a Python string: a qualname may hold
    // any character, NUL included, where `PyErr_WarnEx` takes a C string.
    let message = format!("coroutine '{qualname}' was never awaited");
    let warned = py
        .import(intern!(py, "warnings"))
        .and_then(|warnings| warnings.call_method1(intern!(py, "warn"), (message, category, 1)));
    if let Err(err) = warned {
        err.write_unraisable(py, None);
    }
    if let Some(raised) = raised {
        raised.restore(py);
    }
}

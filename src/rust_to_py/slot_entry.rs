//! The one way into Rust from a type slot that CPython calls directly (`am_send`): no PyO3
//! trampoline stands between CPython and it, so this module does its two jobs. (`am_await` and
//! `am_anext` take their fast paths without it: they call no Python code and drop nothing.)
//!
//! - **Attach without checks.** CPython calls a slot on an attached thread, even while the
//!   interpreter finalises (it closes the coroutines still alive then). `Python::attach`
//!   checks the interpreter's state and *panics* when it is finalising, which inside an
//!   `extern "C"` function aborts the process. `Python::attach_unchecked` only counts the
//!   attach, which is all a slot needs, and PyO3 then knows the thread is attached (objects
//!   dropped inside are released here and now, not queued for a later attach).
//! - **No unwinding across the boundary.** A panic inside becomes the Python exception of a
//!   panic (see [`panic`](super::panic)), set as the thread's error, and the slot returns its
//!   error value.

use std::panic::{self, AssertUnwindSafe};

use pyo3::prelude::*;

use crate::rust_to_py::panic::panic_exception;

/// Runs `body` for a slot CPython called; its error (or panic) is raised and `error_value`
/// returned instead.
///
/// # Safety
/// Called only from a type slot that CPython invoked on an attached thread.
pub(crate) unsafe fn enter_slot<R>(
    error_value: R,
    body: impl for<'py> FnOnce(Python<'py>) -> PyResult<R>,
) -> R {
    let run = |py: Python<'_>| match panic::catch_unwind(AssertUnwindSafe(|| body(py))) {
        Ok(Ok(value)) => value,
        Ok(Err(err)) => {
            err.restore(py);
            error_value
        }
        Err(payload) => {
            panic_exception(payload).restore(py);
            error_value
        }
    };
    // SAFETY: `attach_unchecked` is sound wherever the thread is attached to a live
    // interpreter, which CPython guarantees when it calls a slot (finalisation included: the
    // interpreter is still there while it runs destructors). It skips only the state checks.
    unsafe { Python::attach_unchecked(run) }
}

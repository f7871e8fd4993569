//! Raising again, where CPython would have, an exception that had no caller.
//!
//! CPython runs a signal handler at the main thread's next bytecode boundary, and what the
//! handler raises is raised there, in whatever Python code runs. pyo3-async runs pending
//! handlers itself before it delivers a wake-up (a handler running inside the delivery, in
//! asyncio's `call_soon` after the future was marked done, would lose the wake-up). What a
//! handler raised then has no caller: a waker returns nothing. [`raise_soon`] raises it as
//! CPython raises a handler's exception — through a pending call (`Py_AddPendingCall`), at the
//! main thread's next bytecode boundary — so a `SystemExit` of a SIGTERM handler ends the
//! program, once, and a Ctrl-C reaches the code that runs, without running its handler twice.
//!
//! The home's drain runs these pending calls (as it runs signal handlers) before each job, so
//! an exception raised again never interrupts a job halfway either.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;

/// Exceptions handed to `Py_AddPendingCall` and not raised yet.
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Raises `raised` at the main thread's next bytecode boundary (see the module docs); if
/// CPython's queue of pending calls is full, hands it back (the caller raises it some other
/// way: the home queues a job that raises it).
pub(crate) fn raise_soon(raised: PyErr) -> Result<(), PyErr> {
    let raised = Box::into_raw(Box::new(raised));
    PENDING.fetch_add(1, Ordering::SeqCst);
    // SAFETY: `Py_AddPendingCall` may be called from any thread; on success CPython calls
    // `raise_pending` once with `raised`, which takes the box back.
    if unsafe { ffi::Py_AddPendingCall(Some(raise_pending), raised.cast()) } != 0 {
        PENDING.fetch_sub(1, Ordering::SeqCst);
        // SAFETY: refused, so CPython never saw the pointer: the box is still ours.
        return Err(unsafe { *Box::from_raw(raised) });
    }
    Ok(())
}

/// Whether an exception waits to be raised again: the loop's thread then lets the drain raise
/// it before delivering anything.
pub(crate) fn pending() -> bool {
    PENDING.load(Ordering::SeqCst) > 0
}

/// On the loop's thread, before a job: raises the exceptions waiting to be raised again (on
/// the main thread; elsewhere CPython leaves them to the main thread).
pub(crate) fn raise_pending_now(py: Python<'_>) -> PyResult<()> {
    if !pending() {
        return Ok(());
    }
    // SAFETY: the thread is attached (`py`); it runs the pending calls only on the main thread.
    if unsafe { ffi::Py_MakePendingCalls() } != 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(())
}

/// The pending call: sets the exception, and fails, so that CPython raises it.
extern "C" fn raise_pending(raised: *mut c_void) -> c_int {
    PENDING.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: the pointer `raise_soon` handed over, passed back once.
    let raised = unsafe { Box::from_raw(raised.cast::<PyErr>()) };
    // SAFETY: CPython runs pending calls on an attached thread; `attach_unchecked` only
    // counts the attach (see `rust_to_py::slot_entry`). Restoring an error cannot panic.
    unsafe { Python::attach_unchecked(|py| raised.restore(py)) };
    -1
}

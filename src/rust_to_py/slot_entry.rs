//! The one way into Rust from a type slot that CPython calls directly (`am_send`,
//! `tp_iternext`): no PyO3 trampoline stands between CPython and it, so this module does its
//! two jobs. (`am_await` and `am_anext` take their fast paths without it: they call no Python
//! code and drop nothing.)
//!
//! - **Count the attach, and nothing more.** CPython calls a slot on an attached thread, even
//!   while the interpreter finalises (it closes the coroutines still alive then). PyO3 must
//!   know the thread is attached, or a `Py` dropped inside is queued for a later attach instead
//!   of released here and now. PyO3's public ways to learn it cost more than the slot's own
//!   work on a ready `await`:
//!   - `Python::attach` checks the interpreter's state and *panics* while it finalises, which
//!     inside an `extern "C"` function aborts the process;
//!   - `Python::attach_unchecked`, called where PyO3 counts no attach (a slot CPython called
//!     straight from the interpreter), attaches again with `PyGILState_Ensure` and leaves with
//!     `PyGILState_Release`. On CPython 3.14 that was a seventh of a ready `await` (S1: 207 ns
//!     before, 173–180 after); 3.11's are cheaper, within the noise of S1.
//!
//!   So the slot enters through PyO3's own trampoline for C callbacks, the one its generated
//!   methods use: it assumes the attach, counts it, and releases the references that other
//!   threads queued meanwhile. Its signature is `binaryfunc`; the second argument carries this
//!   call's [`Frame`] (the slot's body and its result), the first is unused. That trampoline is
//!   in PyO3's hidden `impl_` module, stable within a minor version (the macros of every PyO3
//!   user call it); a PyO3 release that changes it fails to compile here, it cannot misbehave.
//! - **No unwinding across the boundary.** A panic inside becomes the Python exception of a
//!   panic (see [`panic`](super::panic)), set as the thread's error, and the slot returns its
//!   error value. PyO3's trampoline would raise its own `PanicException` instead, so the body
//!   catches its panics before they reach it.

use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

use pyo3::ffi;
use pyo3::impl_::trampoline::{binaryfunc, MethodDef};
use pyo3::prelude::*;

use crate::rust_to_py::panic::panic_exception;

/// Runs `body` for a slot CPython called; its error (or panic) is raised and `error_value`
/// returned instead.
///
/// # Safety
/// Called only from a type slot that CPython invoked on an attached thread.
pub(crate) unsafe fn enter_slot<R, B>(error_value: R, body: B) -> R
where
    B: for<'py> FnOnce(Python<'py>) -> PyResult<R>,
{
    let mut frame = Frame {
        body: Some(body),
        output: error_value,
    };
    // SAFETY: the thread is attached (the caller's guarantee), which is all the trampoline
    // asks. Its second argument is not an object but this frame, which only `run_frame` reads,
    // during this call; the first is never read.
    unsafe {
        binaryfunc::<Entry<B, R>>(ptr::null_mut(), (&raw mut frame).cast::<ffi::PyObject>());
    }
    frame.output
}

/// One slot call: the body, taken when it runs, and what the slot returns (the error value
/// until the body succeeds).
struct Frame<B, R> {
    body: Option<B>,
    output: R,
}

/// The trampoline's callee for a body of type `B`: PyO3 takes its callee as a constant.
struct Entry<B, R>(PhantomData<(B, R)>);

impl<B, R> MethodDef<binaryfunc::Func> for Entry<B, R>
where
    B: for<'py> FnOnce(Python<'py>) -> PyResult<R>,
{
    const METH: binaryfunc::Func = run_frame::<B, R>;
}

/// Runs the frame's body inside the trampoline (attached and counted). Returns null, with no
/// exception of its own: the slot's outcome is in the frame.
///
/// # Safety
/// `frame` is the live `Frame<B, R>` of an [`enter_slot`] call.
unsafe fn run_frame<B, R>(
    py: Python<'_>,
    _: *mut ffi::PyObject,
    frame: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject>
where
    B: for<'py> FnOnce(Python<'py>) -> PyResult<R>,
{
    // SAFETY: `enter_slot` passes its frame, borrowed by nothing else during the call.
    let frame = unsafe { &mut *frame.cast::<Frame<B, R>>() };
    let Some(body) = frame.body.take() else {
        return Ok(ptr::null_mut());
    };
    match panic::catch_unwind(AssertUnwindSafe(|| body(py))) {
        Ok(Ok(value)) => frame.output = value,
        Ok(Err(err)) => err.restore(py),
        Err(payload) => panic_exception(payload).restore(py),
    }
    Ok(ptr::null_mut())
}

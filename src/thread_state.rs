//! Python thread states kept by threads Python did not create, so that attaching them is cheap.
//!
//! A thread that CPython does not know has no thread state. Each `Python::attach` on it
//! (`PyGILState_Ensure`) creates one, and the matching release deletes it again: a heap
//! allocation, registration in the interpreter's thread list under its lock, and on the first
//! Python call a fresh frame stack (an `mmap` on 3.11+). On a tokio worker that attaches once
//! per task, that is most of the cost of handing work to Python: `EventLoop::spawn` from a
//! tokio task took 140 µs a round trip on asyncio in `make bench` (93 µs on uvloop), and 93
//! (42) µs once the workers kept their thread states.
//!
//! CPython's own rule makes keeping one safe: a thread state created with `PyThreadState_New`
//! is registered as the thread's own, and `PyGILState_Ensure` / `PyGILState_Release` then use
//! it without ever deleting it. Creating one needs no interpreter lock, so a thread can do it
//! when it starts, without waiting for the Python loop to let go of the interpreter.
//!
//! Deleting one must attach, which is why it is a separate, explicit step
//! ([`release_thread_state`] in `on_thread_stop`) and never a thread-local destructor: a
//! thread that exits while another holds the interpreter and joins it would deadlock. Both
//! steps go through the exit guard, so neither races the interpreter's finalisation; a state
//! still kept then is freed by CPython with every other.

use std::cell::Cell;
use std::ptr;

use pyo3::ffi;

thread_local! {
    /// The thread state this thread keeps; null when it keeps none.
    static KEPT: Cell<*mut ffi::PyThreadState> = const { Cell::new(ptr::null_mut()) };
}

/// Gives the calling thread a Python thread state that it keeps until
/// [`release_thread_state`], so that each later `Python::attach` on it only takes the
/// interpreter, instead of creating and deleting a thread state every time.
///
/// Meant for executor threads that attach again and again — tokio workers, smol or rayon
/// pools — from their thread-start hook. The runtime of [`pyo3_async::tokio`](crate::tokio)
/// does this on its own threads. It does nothing on a thread that has a thread state already
/// (a Python thread, or one inside `Python::attach`), before the interpreter is initialised,
/// once it is exiting, and under the limited API (abi3) until pyo3-async has met an event
/// loop (the limited API names the interpreter only to an attached thread). It is idempotent
/// and costs a thread-local read when the thread keeps a state, so it may also sit in a hook
/// that runs often (tokio's `on_thread_unpark`), to catch threads started before the
/// interpreter was known.
///
/// ```
/// use pyo3::prelude::*;
///
/// Python::initialize();
/// let runtime = tokio::runtime::Builder::new_multi_thread()
///     .on_thread_start(pyo3_async::keep_thread_state)
///     .on_thread_stop(pyo3_async::release_thread_state)
///     .build()
///     .unwrap();
/// let answer = runtime.block_on(async {
///     tokio::spawn(async { Python::attach(|py| py.eval(c"6 * 7", None, None)?.extract::<i64>()) })
///         .await
///         .unwrap()
/// });
/// assert_eq!(answer.unwrap(), 42);
/// ```
pub fn keep_thread_state() {
    if KEPT.get().is_null() {
        KEPT.set(imp::create());
    }
}

/// Deletes the thread state that [`keep_thread_state`] gave the calling thread (attaching
/// briefly to do so); does nothing if it keeps none, while it is attached, or once the
/// interpreter is exiting (CPython then frees the state itself).
///
/// Call it from the thread-stop hook of a pool whose threads come and go (tokio's blocking
/// threads end after ten idle seconds); a state that is never released stays allocated until
/// the interpreter ends. Do not drop such a pool while attached: its threads attach to end.
///
/// ```
/// use pyo3::prelude::*;
///
/// Python::initialize();
/// std::thread::spawn(|| {
///     pyo3_async::keep_thread_state();
///     let total: i64 = (0..3).map(|i| Python::attach(|_py| i)).sum();
///     pyo3_async::release_thread_state();
///     assert_eq!(total, 3);
/// })
/// .join()
/// .unwrap();
/// ```
pub fn release_thread_state() {
    let kept = KEPT.get();
    if !kept.is_null() && imp::delete(kept) {
        KEPT.set(ptr::null_mut());
    }
}

/// PyPy's thread states are its own: no thread keeps one there, and attaching works as without.
#[cfg(PyPy)]
mod imp {
    use pyo3::ffi;

    pub(super) fn create() -> *mut ffi::PyThreadState {
        std::ptr::null_mut()
    }

    pub(super) fn delete(_kept: *mut ffi::PyThreadState) -> bool {
        true
    }
}

/// The limited API names the main interpreter only to an attached thread
/// (`PyInterpreterState_Get`), so pyo3-async notes it when it first meets an event loop
/// ([`note_interpreter`]); until then threads keep nothing.
#[cfg(all(Py_LIMITED_API, not(PyPy)))]
static INTERPRETER: std::sync::atomic::AtomicPtr<ffi::PyInterpreterState> =
    std::sync::atomic::AtomicPtr::new(ptr::null_mut());

/// Notes the interpreter `py` is attached to, for threads that make their state later.
pub(crate) fn note_interpreter(_py: pyo3::Python<'_>) {
    #[cfg(all(Py_LIMITED_API, not(PyPy)))]
    // SAFETY: `_py` proves the thread is attached, which is all `PyInterpreterState_Get` needs.
    INTERPRETER.store(
        unsafe { ffi::PyInterpreterState_Get() },
        std::sync::atomic::Ordering::Release,
    );
}

#[cfg(not(PyPy))]
mod imp {
    use std::ptr;

    use pyo3::ffi;

    use crate::exit_guard;

    /// The main interpreter, or null where it is not known yet (limited API).
    fn interpreter() -> *mut ffi::PyInterpreterState {
        #[cfg(not(Py_LIMITED_API))]
        // SAFETY: reads runtime state; called only while the runtime is initialised.
        return unsafe { ffi::PyInterpreterState_Main() };
        #[cfg(Py_LIMITED_API)]
        return super::INTERPRETER.load(std::sync::atomic::Ordering::Acquire);
    }

    /// A new thread state for the main interpreter, bound to this thread; null if the thread
    /// has one, or the interpreter is not there (yet, or any more).
    pub(super) fn create() -> *mut ffi::PyThreadState {
        // SAFETY: `Py_IsInitialized` and `PyGILState_GetThisThreadState` read runtime state
        // and need no thread state; the latter is only asked while the runtime is initialised.
        let possible = unsafe {
            ffi::Py_IsInitialized() != 0 && ffi::PyGILState_GetThisThreadState().is_null()
        };
        if !possible {
            return ptr::null_mut();
        }
        // Before the exit guard, which writes a counter every thread shares: under the limited
        // API, unpark hooks ask here until the interpreter is known.
        let interpreter = interpreter();
        if interpreter.is_null() {
            return ptr::null_mut();
        }
        exit_guard::unless_exiting(|| {
            // SAFETY: `PyThreadState_New` needs no interpreter lock (its docs say so; it takes
            // the runtime's own lock). The exit guard keeps finalisation from beginning
            // meanwhile, so the interpreter exists. The thread has no thread state (checked
            // above; no other code runs on this thread meanwhile), so the new one becomes the
            // thread's own: `PyGILState_Ensure` will find and restore it, and its release
            // will not delete it.
            unsafe { ffi::PyThreadState_New(interpreter) }
        })
        .unwrap_or(ptr::null_mut())
    }

    /// Attaches with `kept`, clears it and deletes it; false (nothing done) when the thread is
    /// attached now or the interpreter is exiting or gone.
    pub(super) fn delete(kept: *mut ffi::PyThreadState) -> bool {
        exit_guard::unless_exiting(|| {
            // SAFETY: the exit guard keeps finalisation (which frees every thread state) from
            // beginning meanwhile, and the runtime is initialised, so `kept` — created by this
            // thread and still its own — is alive, and `PyGILState_Ensure` attaches with it.
            // `LOCKED` means the thread was attached already (inside `Python::attach`): the
            // state is in use, so it is left alone and the ensure undone. Otherwise the thread
            // now holds the interpreter with `kept` current: it is cleared, made not current
            // (releasing the interpreter), and deleted, as CPython's docs order it.
            unsafe {
                if ffi::Py_IsInitialized() == 0 {
                    return false;
                }
                let ensured = ffi::PyGILState_Ensure();
                if matches!(ensured, ffi::PyGILState_STATE::PyGILState_LOCKED) {
                    ffi::PyGILState_Release(ensured);
                    return false;
                }
                ffi::PyThreadState_Clear(kept);
                ffi::PyEval_ReleaseThread(kept);
                ffi::PyThreadState_Delete(kept);
                true
            }
        })
        .unwrap_or(false)
    }
}

//! Python thread states kept by threads Python did not create, so that attaching them is cheap.
//!
//! A thread that CPython does not know has no thread state. Each `Python::attach` on it
//! (`PyGILState_Ensure`) creates one, and the matching release deletes it again: a heap
//! allocation, registration in the interpreter's thread list under its lock, and on the first
//! Python call a fresh frame stack (an `mmap` on 3.11+). On an executor thread that attaches
//! once per task, that is most of the cost of handing work to Python: `EventLoop::spawn` from a
//! tokio task took 122 µs a round trip on asyncio in `make bench`, and 78 µs once the workers
//! kept their thread states.
//!
//! CPython's own rule makes keeping one possible: a thread state created with
//! `PyThreadState_New` is registered as the thread's own, and `PyGILState_Ensure` /
//! `PyGILState_Release` count their uses of it (its *gilstate counter*) and delete it when the
//! count drops to zero. `PyThreadState_New` starts the count at one: that one is the thread's
//! own hold, which [`release_thread_state`] gives up.
//!
//! # What a kept state keeps
//!
//! A kept state is what a thread started by `threading` has: one Python thread state for the
//! thread's life. So what Python code keeps *in the thread state* stays from one attach to the
//! next — `threading.local` values, `contextvars` set outside any `Context.run`, the `decimal`
//! context, per-thread trace and async-generator hooks — and on an executor, from one task to
//! the next task that runs on that thread. Nothing in CPython or PyO3 runs when a thread
//! attaches or detaches, so a kept state cannot be reset between attaches: keeping is opt-in,
//! for threads whose tasks keep no per-request state there (or run their Python work in a
//! context of their own, as [`EventLoop::spawn_with`](crate::EventLoop::spawn_with) does). The
//! runtime of [`pyo3_async::tokio`](crate::tokio) keeps none by default.
//!
//! # States and transitions
//!
//! Per thread; `count` is CPython's gilstate counter of the thread's state, `held` whether the
//! thread's own hold is still in it (this module's thread-local `KEPT` is non-null exactly
//! then). `attach` and `end` are an outermost `Python::attach` and its end; `detach` is
//! `Python::detach` inside an attach.
//!
//! | state | `count` | `keep` | `attach` / `end` | `release` |
//! |---|---|---|---|---|
//! | none (no thread state) | — | creates one: *kept, idle* | a temporary state, deleted at `end` | nothing |
//! | temporary (inside PyO3's attach, no hold) | ≥ 1 | nothing | nesting counts | nothing |
//! | kept, idle | 1 | nothing | *kept, in use* / back | deletes it now: *none* |
//! | kept, in use (attached or detached inside) | 1 + uses | nothing | nesting counts | gives up the hold: *temporary*, deleted when the last use ends |
//!
//! Invariants:
//! - A thread state is deleted only by the gilstate counter reaching zero, which CPython does
//!   in `PyGILState_Release` on the owning thread, attached, once nobody uses it: a release
//!   in any order of keep / attach / detach / release can therefore never free a state that a
//!   `detach` will restore (that was a segfault), nor one in use.
//! - `release` gives up the hold with one `PyGILState_Ensure` and two `PyGILState_Release`s;
//!   the second takes the count to zero only when the thread used it nowhere else.
//! - Both steps go through the exit guard, so neither races the interpreter's finalisation; a
//!   state still kept then is freed by CPython with every other.
//! - Release is an explicit call (a thread-stop hook), never a thread-local destructor: a
//!   thread that exits while another holds the interpreter and joins it would deadlock there.

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
/// pools — from their thread-start hook. The thread then behaves as a Python thread does:
/// what Python code stores in the thread state (`threading.local`, `contextvars` set outside a
/// `Context.run`, the `decimal` context) stays there for the next attach, and so for the next
/// task on that thread: nothing in CPython or PyO3 runs when a thread attaches or detaches,
/// so a kept state cannot be reset between them. Keep states on threads whose tasks store
/// no per-request state there.
///
/// Before Python 3.14, the process's first `import threading` must not run on a thread that
/// keeps a state it never releases: `threading` takes the importing thread for the main one,
/// and the interpreter's exit waits for that thread's state to be deleted (seen on 3.11). A
/// program that embeds Python imports `threading` on its main thread first (importing
/// `asyncio` does); an extension module's Python program has done so already.
///
/// It does nothing on a thread that has a thread state already (a Python thread, or one inside
/// `Python::attach`), before the interpreter is initialised, once it is exiting, and under the
/// limited API (abi3) until pyo3-async has met an event loop (the limited API names the
/// interpreter only to an attached thread). It is idempotent and costs a thread-local read when
/// the thread keeps a state, so it may also sit in a hook that runs often (tokio's
/// `on_thread_unpark`), to catch threads started before the interpreter was known.
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

/// Gives up the thread state that [`keep_thread_state`] gave the calling thread: it is deleted
/// now, or — when the thread is inside `Python::attach` (detached within it or not) — when
/// that attach ends. Does nothing if the thread keeps none, or once the interpreter is exiting
/// (CPython then frees the state itself). Safe to call anywhere, in any order.
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
    if !KEPT.get().is_null() && imp::give_up() {
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

    pub(super) fn give_up() -> bool {
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

    /// Gives up the thread's own hold on its state (see the module's state table): one
    /// `PyGILState_Ensure` and two releases, the first of which leaves the thread attached.
    /// CPython deletes the state at the release that takes its count to zero: the second one
    /// here when the thread used it nowhere else, else the end of the thread's outermost
    /// attach. False (nothing done) when the interpreter is exiting or gone.
    pub(super) fn give_up() -> bool {
        exit_guard::unless_exiting(|| {
            // SAFETY: the exit guard keeps finalisation (which frees every thread state) from
            // beginning meanwhile, and the runtime is initialised, so the thread's kept state
            // is alive and `PyGILState_Ensure` attaches with it (count + 1). The first release,
            // as `LOCKED`, only counts down (the thread stays attached, the count stays >= 1:
            // the thread's hold is still in it); the second, with what the ensure returned,
            // counts down the hold: at zero CPython clears and deletes the state and releases
            // the interpreter, else it restores what the thread had (detached, or attached).
            unsafe {
                if ffi::Py_IsInitialized() == 0 {
                    return false;
                }
                let ensured = ffi::PyGILState_Ensure();
                ffi::PyGILState_Release(ffi::PyGILState_STATE::PyGILState_LOCKED);
                ffi::PyGILState_Release(ensured);
                true
            }
        })
        .unwrap_or(false)
    }
}

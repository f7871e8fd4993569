//! Python initialised for a program whose threads come and go: a test binary.
//!
//! # Why this exists
//!
//! Before 3.13, two things are "the main thread" of an embedded interpreter, and they need not
//! agree:
//!
//! - CPython's: the thread that initialised Python. Only it may install signal handling
//!   (`signal.set_wakeup_fd` raises `ValueError` elsewhere).
//! - `threading.main_thread()`: the thread that first imported `threading`.
//!
//! uvloop decides whether it runs on the main thread (and so sets up signal handling) by
//! comparing thread ids with `threading.main_thread()`. libtest runs each test on a thread that
//! ends with the test, and the OS reuses the ids of ended threads. When the thread that first
//! imported `threading` was not the one that initialised Python, ended, and a later thread got
//! its id back, uvloop took that later thread for the main thread, CPython refused its signal
//! set-up, and `uvloop.run` failed ("Cannot close a running event loop") with its loop left
//! open: one run in ten of a test binary, depending on which test thread came first.
//!
//! Initialising Python and importing `threading` on the same thread makes the two agree, and
//! keeps them agreeing: the initialising thread's state lives as long as the interpreter, so
//! `threading` never sees its main thread end, and a thread that reuses its id is CPython's
//! main thread as much as uvloop's. From 3.13, `threading.main_thread()` is the initialising
//! thread whichever thread imports `threading`.

use std::sync::Once;

use pyo3::prelude::*;

/// Initialises Python on this thread, unless it already is, and imports `threading` there:
/// what `#[pyo3_async::test]` does before each test, so that the thread `threading` (and so
/// uvloop) takes for the main thread is the one CPython does.
///
/// Once per process: whichever thread calls first does both, under the same lock, so that no
/// other thread imports `threading` in between. Where Python was initialised by other code
/// first, this thread imports `threading` if nothing did yet; the loops' entry point refuses
/// clearly what uvloop would then fail at (`pyo3_async.loops.run_loop`).
#[doc(hidden)]
pub fn initialize_python() {
    static INITIALIZED: Once = Once::new();
    INITIALIZED.call_once(|| {
        // PyPy cannot be embedded (PyO3 has no `initialize` there): its tests run under `pypy`.
        #[cfg(not(PyPy))]
        Python::initialize();
        // An import that fails leaves nothing to agree on: the loop that needs `threading`
        // reports the error when it imports it.
        Python::attach(|py| drop(py.import("threading")));
    });
}

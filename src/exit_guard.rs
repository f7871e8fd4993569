//! Attaching to the interpreter from threads Python does not know, without racing its exit.
//!
//! CPython ends every thread that attaches while the interpreter finalises (`pthread_exit`
//! inside `PyEval_RestoreThread`); a Rust thread cannot be unwound that way, so the process
//! aborts. Checking "is it finalising?" first does not help: finalisation may begin between
//! the check and the attach. Every bridge that attaches from executor threads (a waker taking
//! the GIL, a future dropped on a tokio worker) aborts now and then at exit for this reason.
//!
//! pyo3-async's wakers never attach (see `wake_queue`), and the few foreign-thread paths that
//! must (dropping a `PyFuture` cancels its task, `PyFuture::extract`, fallbacks for loops that
//! cannot watch a socket) go through [`attach_unless_exiting`]: a thread announces itself in a
//! counter *before* it checks the exit flag. An `atexit` hook — atexit runs before CPython
//! starts finalising, with every Python thread still working — raises the flag, then waits,
//! with the interpreter released, until the announced threads are done. A thread therefore
//! either attaches before finalisation begins or sees the flag and does not attach.

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// Raised by the `atexit` hook: no new foreign-thread attach from here on.
static EXITING: AtomicBool = AtomicBool::new(false);
/// Threads between announcing themselves and leaving the interpreter. Plain atomics, no lock:
/// a forked child resets them (`reset_in_child`), where a lock held by one of the parent's
/// threads would stay held for ever.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// How long exit waits for attached threads; a thread attached for longer (blocked in Python
/// code that waits for the main thread, say) must not hang the process.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// Runs `f` with the interpreter attached, from any thread, unless this thread would have to
/// attach while the interpreter is exiting (its `atexit` handlers ran) or gone: then `None`,
/// without touching the interpreter. A thread that is attached already always runs `f`.
///
/// Use it instead of `Python::attach` on threads that Python did not create (tokio or smol
/// workers, `std::thread`s) when they may still run while the process exits: a thread that
/// attaches while CPython finalises is killed, which aborts a Rust process. The guard works
/// once pyo3-async has seen the interpreter (any [`EventLoop`](crate::EventLoop) or exported
/// awaitable does); before that it behaves as `Python::try_attach`.
///
/// ```
/// use pyo3::prelude::*;
///
/// // On a tokio worker, say: hands a result to Python unless the process is exiting.
/// let answer: Option<PyResult<Py<PyAny>>> = pyo3_async::attach_unless_exiting(|py| {
///     Ok(42i64.into_pyobject(py)?.into_any().unbind())
/// });
/// # let _ = answer;
/// ```
pub fn attach_unless_exiting<F, R>(f: F) -> Option<R>
where
    F: for<'py> FnOnce(Python<'py>) -> R,
{
    // A thread that is attached already (the main thread in a late `atexit` hook, say) runs
    // no risk: only threads that would have to attach are refused.
    if thread_is_attached() {
        return Some(Python::attach(f));
    }
    unless_exiting(|| Python::try_attach(f)).flatten()
}

/// Runs `f` unless the interpreter is exiting (its `atexit` handlers ran), keeping exit from
/// beginning until `f` returns: for a foreign thread's work that must not race finalisation,
/// whether it attaches ([`attach_unless_exiting`]) or only touches the runtime's thread
/// states (`thread_state`). `None` when refused.
pub(crate) fn unless_exiting<R>(f: impl FnOnce() -> R) -> Option<R> {
    // Announce first, then check: the hook raises the flag first, then reads the counter.
    // With sequentially consistent operations on both sides, at least one sees the other.
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    let done = if EXITING.load(Ordering::SeqCst) {
        None
    } else {
        Some(f())
    };
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    done
}

/// In a forked child (see `fork`): the threads the parent counted in flight do not exist
/// here, and would hold the child's exit for [`EXIT_WAIT`].
#[cfg(unix)]
pub(crate) fn reset_in_child() {
    IN_FLIGHT.store(0, Ordering::SeqCst);
}

/// Work to do at exit before the door closes, while every thread may still attach: the
/// tokio runtime's shutdown drops its tasks there (see `tokio::runtime`). A list of leaked
/// nodes, pushed without a lock (a lock could be held by a thread a forked child lacks).
struct ExitWork {
    work: fn(),
    next: *mut ExitWork,
}

static EXIT_WORK: AtomicPtr<ExitWork> = AtomicPtr::new(ptr::null_mut());

/// Runs `work` at exit (with the interpreter released), before foreign threads are refused;
/// the work registered last runs first.
// Only the tokio runtime has such work so far.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn before_closing(work: fn()) {
    let node = Box::into_raw(Box::new(ExitWork {
        work,
        next: ptr::null_mut(),
    }));
    let mut head = EXIT_WORK.load(Ordering::Acquire);
    loop {
        // SAFETY: `node` is ours until the exchange below publishes it.
        unsafe { (*node).next = head };
        match EXIT_WORK.compare_exchange(head, node, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(now) => head = now,
        }
    }
}

fn run_exit_work() {
    let mut node = EXIT_WORK.swap(ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: nodes are leaked boxes, never freed; the swap took the list, so each runs once.
    while let Some(current) = unsafe { node.as_ref() } {
        (current.work)();
        node = current.next;
    }
}

/// Registers the `atexit` hook, once per process. Called wherever pyo3-async first meets an
/// event loop, which is before any foreign thread can hold anything of ours.
pub(crate) fn install(py: Python<'_>) {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.load(Ordering::Relaxed) || INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    let registered = wrap_pyfunction!(before_exit, py).and_then(|hook| {
        py.import("atexit")?.call_method1("register", (hook,))?;
        Ok(())
    });
    if let Err(err) = registered {
        err.write_unraisable(py, None);
    }
}

/// The `atexit` hook: closes the door to foreign threads, then lets those inside finish.
#[pyfunction]
fn before_exit(py: Python<'_>) {
    py.detach(run_exit_work);
    EXITING.store(true, Ordering::SeqCst);
    py.detach(|| {
        // Polled, not signalled: exit happens once, and a condition variable's lock is what
        // a forked child could inherit held.
        let deadline = Instant::now() + EXIT_WAIT;
        while IN_FLIGHT.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// Whether this thread is attached to the interpreter right now (without attaching it).
#[cfg(not(Py_LIMITED_API))]
pub(crate) fn thread_is_attached() -> bool {
    // SAFETY: both only read runtime state and have no preconditions. `PyGILState_Check`
    // answers "yes" when it cannot tell (before initialisation, once finalisation removed its
    // thread-state key), so it is only asked while the runtime is initialised, which it stays
    // until after the `atexit` hooks ran.
    unsafe { pyo3::ffi::Py_IsInitialized() != 0 && pyo3::ffi::PyGILState_Check() == 1 }
}

/// The limited API cannot tell (`PyGILState_Check` is not part of it), so the answer is the
/// one that is always safe: "no". Callers then attach through PyO3 (a no-op when attached) or
/// take the path of foreign threads: wake-ups go through the loop's home, and an attached
/// thread's late `atexit` work is refused like a foreign thread's.
#[cfg(Py_LIMITED_API)]
pub(crate) fn thread_is_attached() -> bool {
    false
}

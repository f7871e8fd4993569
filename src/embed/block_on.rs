//! Waiting for a Rust future from synchronous code that Python calls: a sync `#[pyfunction]`
//! that wraps an async API.
//!
//! Three things make this different from `futures::executor::block_on`:
//! - **The interpreter is released** while the future is pending, so other Python threads run
//!   (and the future's own Python work, on a loop in another thread, can finish).
//! - **Ctrl-C works.** Python runs signal handlers on the main thread, between bytecodes; a
//!   thread blocked in Rust never gets there. The wait wakes every [`SIGNAL_CHECK`] to run
//!   them: a `KeyboardInterrupt` (or any exception a handler raises) drops the future, which
//!   cancels what it awaited, and is raised by the call.
//! - **It refuses to block an event loop's thread.** Work the future needs from that loop
//!   could never run, and the loop would hang for ever with the interpreter held. Awaiting
//!   from a coroutine is the way there.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::glue;

/// How often a wait stops to run Python's signal handlers: Ctrl-C is raised within this.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// Runs `future` to completion on this thread, with the interpreter released while it is
/// pending, and returns its output; for synchronous code that Python calls.
///
/// Python's signal handlers run while it waits: an exception they raise (Ctrl-C's
/// `KeyboardInterrupt`) drops the future and is returned. On a thread that runs an event loop
/// it refuses at once with `RuntimeError`, since the loop could not run what the future waits
/// for: there, await instead.
///
/// ```
/// use pyo3::prelude::*;
///
/// /// A blocking API for Python callers, over an async one.
/// #[pyfunction]
/// fn fetch_blocking(py: Python<'_>, key: String) -> PyResult<String> {
///     pyo3_async::block_on(py, async move { format!("value of {key}") })
/// }
///
/// Python::initialize();
/// Python::attach(|py| {
///     let fetch = wrap_pyfunction!(fetch_blocking, py)?;
///     assert_eq!(fetch.call1(("k",))?.extract::<String>()?, "value of k");
///     PyResult::Ok(())
/// })?;
/// # PyResult::Ok(())
/// ```
pub fn block_on<F>(py: Python<'_>, future: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    if glue::runs_a_loop(py)?.call0()?.is_truthy()? {
        return Err(PyRuntimeError::new_err(
            "pyo3_async::block_on cannot wait on the thread of a running event loop: the loop \
             could not run what the future waits for, and would hang; await it instead (from \
             a coroutine), or call this from another thread",
        ));
    }
    wait(py, future)
}

/// [`block_on`] without the check for a running loop (`LoopThread::block_on` makes its own).
pub(crate) fn wait<F>(py: Python<'_>, future: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    // What a program that only ever waits here needs as much as one with a loop: exit that
    // waits for foreign threads, and forked children that know they are.
    crate::exit_guard::install(py);
    crate::fork::watch();
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    loop {
        let polled = py.detach(|| {
            let mut cx = Context::from_waker(&waker);
            let deadline = Instant::now() + SIGNAL_CHECK;
            loop {
                if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                    return Some(output);
                }
                // A wake-up unparks at once; a spurious unpark only costs a poll.
                match deadline.checked_duration_since(Instant::now()) {
                    Some(left) => thread::park_timeout(left),
                    None => return None,
                }
            }
        });
        if let Some(output) = polled {
            return Ok(output);
        }
        // Dropping `future` on return cancels what it awaited.
        py.check_signals()?;
    }
}

/// Wakes the waiting thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

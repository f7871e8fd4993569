//! Work that reaches an asyncio loop while `asyncio.run` shuts it down (test_shutdown.py).

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use pyo3::exceptions::PyTimeoutError;
use pyo3::prelude::*;
use pyo3_async::EventLoop;

use crate::tokio;

/// Outcomes of detached work, as the names of their exception types (or "ok").
static OUTCOMES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static RECORDED: Condvar = Condvar::new();

/// Starts `coroutine_function()` on the running loop now (this is the loop's thread), and hands
/// its `PyFuture` to a tokio task that nobody awaits: Rust-owned Python work. Its outcome is
/// recorded for `detached_outcomes`.
#[pyfunction]
fn spawn_detached(py: Python<'_>, coroutine_function: &Bound<'_, PyAny>) -> PyResult<()> {
    let future = EventLoop::current(py)?.spawn(&coroutine_function.call0()?)?;
    tokio().spawn(async move {
        let outcome = match future.await {
            Ok(_) => "ok".to_owned(),
            Err(err) => pyo3_async::attach_unless_exiting(|py| {
                err.get_type(py)
                    .name()
                    .map_or_else(|_| "?".to_owned(), |name| name.to_string())
            })
            .unwrap_or_else(|| "exiting".to_owned()),
        };
        OUTCOMES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(outcome);
        RECORDED.notify_all();
    });
    Ok(())
}

/// Waits (detached, at most 10 s) until `count` detached outcomes are recorded; returns and
/// forgets them.
#[pyfunction]
fn detached_outcomes(py: Python<'_>, count: usize) -> PyResult<Vec<String>> {
    py.detach(|| {
        let outcomes = OUTCOMES.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut outcomes, waited) = RECORDED
            .wait_timeout_while(outcomes, Duration::from_secs(10), |outcomes| {
                outcomes.len() < count
            })
            .unwrap_or_else(PoisonError::into_inner);
        if waited.timed_out() {
            return Err(PyTimeoutError::new_err(format!(
                "{} of {count} outcomes recorded",
                outcomes.len()
            )));
        }
        Ok(std::mem::take(&mut *outcomes))
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(spawn_detached, m)?)?;
    m.add_function(wrap_pyfunction!(detached_outcomes, m)?)?;
    Ok(())
}

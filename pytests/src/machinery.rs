//! asyncio's newer machinery seen from Rust (test_asyncio_machinery.py): what Python code run
//! inside a Rust coroutine's poll sees of its task.

use pyo3::prelude::*;

use crate::coroutines::suspend_once;

/// Calls `callback()` inside the first poll, then again after a suspension; both results.
#[pyo3_async::pyfunction]
async fn call_during_poll(callback: Py<PyAny>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    let first = Python::attach(|py| callback.call0(py))?;
    suspend_once().await;
    let second = Python::attach(|py| callback.call0(py))?;
    Ok((first, second))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(call_during_poll, m)?)?;
    Ok(())
}

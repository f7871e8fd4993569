//! pyo3-async-runtimes 0.30 (tokio runtime; asyncio only).

use std::time::Instant;

use futures::StreamExt;
use pyo3::prelude::*;
use pyo3_async_runtimes::tokio::{future_into_py, get_current_locals, into_stream_v2};

#[pyfunction]
#[allow(unused_variables)]
fn ready(py: Python<'_>, trio: bool) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async { Ok(1u64) })
}

#[pyfunction]
#[allow(unused_variables)]
fn tokio_wake(py: Python<'_>, trio: bool) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async {
        let _ = tokio::spawn(async {}).await;
        Ok(1u64)
    })
}

#[pyfunction]
#[allow(unused_variables)]
fn pending(py: Python<'_>, trio: bool) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, std::future::pending::<PyResult<u64>>())
}

/// T1: a tokio timer.
#[pyfunction]
#[allow(unused_variables)]
fn tokio_sleep(py: Python<'_>, trio: bool) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        Ok(1u64)
    })
}

/// S5: a tokio task awaits `coroutine_function()` on the running loop `n` times; ns in all.
#[pyfunction]
fn call_python(
    py: Python<'_>,
    coroutine_function: Py<PyAny>,
    n: u64,
) -> PyResult<Bound<'_, PyAny>> {
    let locals = get_current_locals(py)?;
    future_into_py(py, async move {
        let start = Instant::now();
        for _ in 0..n {
            let call = Python::attach(|py| {
                pyo3_async_runtimes::into_future_with_locals(
                    &locals,
                    coroutine_function.bind(py).call0()?,
                )
            })?;
            call.await?;
        }
        Ok(start.elapsed().as_nanos() as u64)
    })
}

/// S6: a tokio task consumes the async generator; returns the number of items.
#[pyfunction]
fn consume<'py>(py: Python<'py>, generator: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let items = into_stream_v2(generator)?;
    future_into_py(py, async move { Ok(items.count().await as u64) })
}

#[pymodule]
fn bench_runtimes(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ready, m)?)?;
    m.add_function(wrap_pyfunction!(tokio_wake, m)?)?;
    m.add_function(wrap_pyfunction!(pending, m)?)?;
    m.add_function(wrap_pyfunction!(tokio_sleep, m)?)?;
    m.add_function(wrap_pyfunction!(call_python, m)?)?;
    m.add_function(wrap_pyfunction!(consume, m)?)?;
    Ok(())
}

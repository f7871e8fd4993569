//! pyo3-async 0.3.2 (pyo3 0.20): the crate the seed README describes.

use std::sync::OnceLock;

use pyo3::prelude::*;

fn tokio() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("a tokio runtime")
    })
}

fn coroutine<F>(trio: bool, future: F) -> PyObject
where
    F: std::future::Future<Output = PyResult<u64>> + Send + 'static,
{
    Python::with_gil(|py| {
        if trio {
            pyo3_async::trio::Coroutine::from_future(future).into_py(py)
        } else {
            pyo3_async::asyncio::Coroutine::from_future(future).into_py(py)
        }
    })
}

#[pyfunction]
fn ready(trio: bool) -> PyObject {
    coroutine(trio, async { Ok(1) })
}

#[pyfunction]
fn tokio_wake(trio: bool) -> PyObject {
    coroutine(trio, async {
        let _ = tokio().spawn(async {}).await;
        Ok(1)
    })
}

#[pyfunction]
fn pending(trio: bool) -> PyObject {
    coroutine(trio, std::future::pending())
}

#[pyfunction]
fn count(trio: bool, n: u64) -> PyObject {
    let stream = futures::stream::iter((0..n).map(PyResult::Ok));
    Python::with_gil(|py| {
        if trio {
            pyo3_async::trio::AsyncGenerator::from_stream(stream).into_py(py)
        } else {
            pyo3_async::asyncio::AsyncGenerator::from_stream(stream).into_py(py)
        }
    })
}

#[pymodule]
fn bench_seed(_py: Python, m: &PyModule) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ready, m)?)?;
    m.add_function(wrap_pyfunction!(tokio_wake, m)?)?;
    m.add_function(wrap_pyfunction!(pending, m)?)?;
    m.add_function(wrap_pyfunction!(count, m)?)?;
    Ok(())
}

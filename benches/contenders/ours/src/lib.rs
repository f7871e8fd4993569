//! pyo3-async (this crate).

use std::sync::OnceLock;
use std::time::Instant;

use futures::StreamExt;
use pyo3::prelude::*;
use pyo3_async::{AsyncGenerator, Backend, Coroutine, EventLoop, PyAsyncIter};

fn tokio() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("a tokio runtime")
    })
}

fn backend(trio: bool) -> Backend {
    if trio {
        Backend::Trio
    } else {
        Backend::Asyncio
    }
}

#[pyfunction]
fn ready(trio: bool) -> Coroutine {
    Coroutine::new(async { PyResult::Ok(1u64) }).with_backend(backend(trio))
}

#[pyfunction]
fn tokio_wake(trio: bool) -> Coroutine {
    Coroutine::new(async {
        let _ = tokio().spawn(async {}).await;
        PyResult::Ok(1u64)
    })
    .with_backend(backend(trio))
}

#[pyfunction]
fn pending(trio: bool) -> Coroutine {
    Coroutine::new(std::future::pending::<PyResult<u64>>()).with_backend(backend(trio))
}

#[pyfunction]
fn count(trio: bool, n: u64) -> AsyncGenerator {
    AsyncGenerator::new(futures::stream::iter((0..n).map(PyResult::Ok))).with_backend(backend(trio))
}

/// S5: a tokio task awaits `coroutine_function()` on the running loop `n` times; ns in all.
#[pyfunction]
fn call_python(py: Python<'_>, coroutine_function: Py<PyAny>, n: u64) -> PyResult<Coroutine> {
    let event_loop = EventLoop::current(py)?;
    let coroutine_function = std::sync::Arc::new(coroutine_function);
    let task = tokio().spawn(async move {
        let start = Instant::now();
        for _ in 0..n {
            // `spawn_with`: the coroutine is made on the loop thread, this one never attaches.
            let coroutine_function = std::sync::Arc::clone(&coroutine_function);
            event_loop
                .spawn_with(move |py| coroutine_function.bind(py).call0())
                .await?;
        }
        PyResult::Ok(start.elapsed().as_nanos() as u64)
    });
    Ok(Coroutine::new(async move {
        task.await
            .map_err(|err| pyo3::exceptions::PyRuntimeError::new_err(err.to_string()))?
    }))
}

/// S6: a tokio task consumes the async generator; returns the number of items.
#[pyfunction]
fn consume(py: Python<'_>, generator: &Bound<'_, PyAny>) -> PyResult<Coroutine> {
    let mut items = PyAsyncIter::with_capacity(&EventLoop::current(py)?, generator, 256)?;
    let task = tokio().spawn(async move {
        let mut count = 0u64;
        while let Some(item) = items.next().await {
            item?;
            count += 1;
        }
        PyResult::Ok(count)
    });
    Ok(Coroutine::new(async move {
        task.await
            .map_err(|err| pyo3::exceptions::PyRuntimeError::new_err(err.to_string()))?
    }))
}

#[pymodule]
fn bench_ours(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ready, m)?)?;
    m.add_function(wrap_pyfunction!(tokio_wake, m)?)?;
    m.add_function(wrap_pyfunction!(pending, m)?)?;
    m.add_function(wrap_pyfunction!(count, m)?)?;
    m.add_function(wrap_pyfunction!(call_python, m)?)?;
    m.add_function(wrap_pyfunction!(consume, m)?)?;
    Ok(())
}

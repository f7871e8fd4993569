//! pyo3-async (this crate), as users write it: `#[pyo3_async::pyfunction]` with the backend
//! detected at each call (the main rows), and the same functions with the backend fixed by hand
//! (`*_fixed`, the "fixed backend" rows).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use pyo3::prelude::*;
use pyo3_async::{AsyncGenerator, Backend, Coroutine, EventLoop, PyAsyncIter};

fn tokio() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            // As the crate's own runtime does, and its docs show for a runtime of your own.
            .on_thread_start(pyo3_async::keep_thread_state)
            .on_thread_unpark(pyo3_async::keep_thread_state)
            .on_thread_stop(pyo3_async::release_thread_state)
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

// ------------------------------------------------------------------ the macro, detection

#[pyo3_async::pyfunction]
#[allow(unused_variables)]
async fn ready(trio: bool) -> u64 {
    1
}

#[pyo3_async::pyfunction]
#[allow(unused_variables)]
async fn tokio_wake(trio: bool) -> u64 {
    let _ = tokio().spawn(async {}).await;
    1
}

#[pyo3_async::pyfunction]
#[allow(unused_variables)]
async fn pending(trio: bool) -> u64 {
    std::future::pending().await
}

#[pyo3_async::pyfunction(generator)]
#[allow(unused_variables)]
async fn count(trio: bool, n: u64) -> impl Stream<Item = PyResult<u64>> + Send {
    futures::stream::iter((0..n).map(PyResult::Ok))
}

/// T1: a tokio timer, polled inside the runtime's context (`tokio` option).
#[pyo3_async::pyfunction(tokio)]
#[allow(unused_variables)]
async fn tokio_sleep(trio: bool) -> u64 {
    tokio::time::sleep(Duration::from_millis(1)).await;
    1
}

// ------------------------------------------------------------------ fixed backend, by hand

#[pyfunction]
fn ready_fixed(trio: bool) -> Coroutine {
    Coroutine::new(async { PyResult::Ok(1u64) }).with_backend(backend(trio))
}

#[pyfunction]
fn tokio_wake_fixed(trio: bool) -> Coroutine {
    Coroutine::new(async {
        let _ = tokio().spawn(async {}).await;
        PyResult::Ok(1u64)
    })
    .with_backend(backend(trio))
}

#[pyfunction]
fn pending_fixed(trio: bool) -> Coroutine {
    Coroutine::new(std::future::pending::<PyResult<u64>>()).with_backend(backend(trio))
}

#[pyfunction]
fn count_fixed(trio: bool, n: u64) -> AsyncGenerator {
    AsyncGenerator::new(futures::stream::iter((0..n).map(PyResult::Ok))).with_backend(backend(trio))
}

// ------------------------------------------------------------------ Rust awaits Python

/// A coroutine awaiting `work`, spawned as a tokio task now.
fn on_tokio<T>(work: impl std::future::Future<Output = PyResult<T>> + Send + 'static) -> Coroutine
where
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    let task = tokio().spawn(work);
    Coroutine::new(async move {
        task.await
            .map_err(|err| pyo3::exceptions::PyRuntimeError::new_err(err.to_string()))?
    })
}

/// S5: a tokio task awaits `coroutine_function()` on the running loop `n` times; ns in all.
/// `spawn_with`: the coroutine is made on the loop thread, the tokio thread never attaches.
#[pyfunction]
fn call_python(py: Python<'_>, coroutine_function: Py<PyAny>, n: u64) -> PyResult<Coroutine> {
    let event_loop = EventLoop::current(py)?;
    let coroutine_function = std::sync::Arc::new(coroutine_function);
    Ok(on_tokio(async move {
        let start = Instant::now();
        for _ in 0..n {
            let coroutine_function = std::sync::Arc::clone(&coroutine_function);
            event_loop
                .spawn_with(move |py| coroutine_function.bind(py).call0())
                .await?;
        }
        PyResult::Ok(start.elapsed().as_nanos() as u64)
    }))
}

/// S5 spawn: the same through `EventLoop::spawn`, as a pyo3-async-runtimes user writes it: the
/// tokio thread attaches to make the coroutine and hand it over.
#[pyfunction]
fn call_python_spawn(py: Python<'_>, coroutine_function: Py<PyAny>, n: u64) -> PyResult<Coroutine> {
    let event_loop = EventLoop::current(py)?;
    Ok(on_tokio(async move {
        let start = Instant::now();
        for _ in 0..n {
            let call =
                Python::attach(|py| event_loop.spawn(&coroutine_function.bind(py).call0()?))?;
            call.await?;
        }
        PyResult::Ok(start.elapsed().as_nanos() as u64)
    }))
}

/// S6: a tokio task consumes the async generator; returns the number of items.
#[pyfunction]
fn consume(py: Python<'_>, generator: &Bound<'_, PyAny>) -> PyResult<Coroutine> {
    let mut items = PyAsyncIter::with_capacity(&EventLoop::current(py)?, generator, 256)?;
    Ok(on_tokio(async move {
        let mut count = 0u64;
        while let Some(item) = items.next().await {
            item?;
            count += 1;
        }
        PyResult::Ok(count)
    }))
}

#[pymodule]
fn bench_ours(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // One tokio runtime for the bench's own tasks and the `tokio` option.
    let _ = pyo3_async::tokio::init_with_handle(tokio().handle().clone());
    m.add_function(wrap_pyfunction!(ready, m)?)?;
    m.add_function(wrap_pyfunction!(tokio_wake, m)?)?;
    m.add_function(wrap_pyfunction!(pending, m)?)?;
    m.add_function(wrap_pyfunction!(count, m)?)?;
    m.add_function(wrap_pyfunction!(tokio_sleep, m)?)?;
    m.add_function(wrap_pyfunction!(ready_fixed, m)?)?;
    m.add_function(wrap_pyfunction!(tokio_wake_fixed, m)?)?;
    m.add_function(wrap_pyfunction!(pending_fixed, m)?)?;
    m.add_function(wrap_pyfunction!(count_fixed, m)?)?;
    m.add_function(wrap_pyfunction!(call_python, m)?)?;
    m.add_function(wrap_pyfunction!(call_python_spawn, m)?)?;
    m.add_function(wrap_pyfunction!(consume, m)?)?;
    // `ready_marked`: `ready` again, marked for `inspect.iscoroutinefunction` (3.12+).
    m.add("ready_marked", m.getattr("ready")?)?;
    pyo3_async::mark_coroutine_functions(m, &["ready_marked"])
}

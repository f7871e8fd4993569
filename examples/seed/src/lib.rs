//! The example of the crate this project grew from, written against pyo3-async with its
//! attribute macros, as the seed shows them (the functions keep their own names: no
//! `async_` prefix to register).
//!
//! Build it with maturin (`make demo` does) and run `examples/seed/demo.py`.

use std::time::Duration;

use futures::Stream;
use pyo3::prelude::*;
use pyo3_async::pyfunction;

#[pymodule]
fn example(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sleep_asyncio, m)?)?;
    m.add_function(wrap_pyfunction!(sleep_trio, m)?)?;
    m.add_function(wrap_pyfunction!(sleep_sniffio, m)?)?;
    m.add_function(wrap_pyfunction!(spawn_future, m)?)?;
    m.add_function(wrap_pyfunction!(count_asyncio, m)?)?;
    m.add_function(wrap_pyfunction!(count_trio, m)?)?;
    Ok(())
}

/// A tokio timer. Polled inside pyo3-async's tokio runtime (the `tokio` option below), it runs
/// on the Python loop that awaits it: no spawn, and a cancelled Python side drops the timer.
async fn sleep(seconds: u64) {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

fn count(until: i32, tick: u64) -> impl Stream<Item = PyResult<i32>> + Send {
    futures::stream::unfold(0, move |i| async move {
        if i == until {
            return None;
        }
        sleep(tick).await;
        Some((PyResult::Ok(i), i + 1))
    })
}

// Works with async function, on any event loop (detected when it first suspends); `tokio`
// polls it inside the tokio runtime's context, for tokio's timer
#[pyfunction(tokio)]
async fn sleep_asyncio(seconds: u64) {
    sleep(seconds).await;
}

// Specify Python async backend and GIL release
#[pyfunction(trio, allow_threads, tokio)]
async fn sleep_trio(seconds: u64) {
    sleep(seconds).await;
}

// Coroutine can be manually instantiated
#[pyfunction]
fn sleep_sniffio(seconds: u64) -> pyo3_async::Coroutine {
    pyo3_async::Coroutine::new(pyo3_async::tokio::in_runtime(async move {
        sleep(seconds).await;
        PyResult::Ok(())
    }))
}

// A tokio task awaits a Python task
#[pyfunction]
fn spawn_future(fut: &Bound<'_, PyAny>) -> PyResult<()> {
    let fut = pyo3_async::PyFuture::from_future(fut)?;
    // Detached on purpose: the Python task goes on whatever happens to this call.
    pyo3_async::tokio::handle().spawn(async move {
        match fut.await {
            Ok(_) => println!("task done"),
            Err(err) => eprintln!("task failed: {err}"),
        }
    });
    Ok(())
}

// Streams are async generators
#[pyfunction(asyncio, generator, tokio)]
async fn count_asyncio(until: i32, tick: u64) -> impl Stream<Item = PyResult<i32>> + Send {
    count(until, tick)
}

#[pyfunction(trio, generator, tokio)]
async fn count_trio(until: i32, tick: u64) -> impl Stream<Item = PyResult<i32>> + Send {
    count(until, tick)
}

//! The example of the crate this project grew from, written against pyo3-async.
//!
//! Build it with maturin (`make demo` does) and run `examples/seed/demo.py`.

use std::sync::OnceLock;
use std::time::Duration;

use futures::Stream;
use pyo3::prelude::*;
use pyo3_async::{AllowThreads, AsyncGenerator, Backend, Coroutine, PyFuture};

fn tokio() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().expect("a tokio runtime"))
}

async fn sleep(seconds: u64) {
    let sleep = async move { tokio::time::sleep(Duration::from_secs(seconds)).await };
    // The timer runs on tokio; the Python event loop only waits for its wake-up.
    let _ = tokio().spawn(sleep).await;
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

/// Sleeps on any event loop (detected on first suspension).
#[pyfunction]
fn sleep_asyncio(seconds: u64) -> Coroutine {
    Coroutine::new(async move {
        sleep(seconds).await;
        PyResult::Ok(())
    })
}

/// Sleeps on trio, polling with the interpreter released.
#[pyfunction]
fn sleep_trio(seconds: u64) -> Coroutine {
    Coroutine::new(AllowThreads::new(async move {
        sleep(seconds).await;
        PyResult::Ok(())
    }))
    .with_backend(Backend::Trio)
}

/// A coroutine built by hand; the backend is detected with sniffio.
#[pyfunction]
fn sleep_sniffio(seconds: u64) -> Coroutine {
    Coroutine::new(async move {
        sleep(seconds).await;
        PyResult::Ok(())
    })
}

/// A tokio task awaits a Python task (an asyncio future, from a tokio worker thread).
#[pyfunction]
fn spawn_future(future: &Bound<'_, PyAny>) -> PyResult<()> {
    let future = PyFuture::from_future(future)?;
    tokio().spawn(async move {
        if let Err(err) = future.await {
            eprintln!("task failed: {err}");
            return;
        }
        println!("task done");
    });
    Ok(())
}

#[pyfunction]
fn count_asyncio(until: i32, tick: u64) -> AsyncGenerator {
    AsyncGenerator::new(count(until, tick)).with_backend(Backend::Asyncio)
}

#[pyfunction]
fn count_trio(until: i32, tick: u64) -> AsyncGenerator {
    AsyncGenerator::new(count(until, tick)).with_backend(Backend::Trio)
}

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

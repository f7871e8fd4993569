//! Async generators over Rust streams (test_async_generator.py, test_bad_input.py).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;

use futures::{Stream, StreamExt};
use pyo3::prelude::*;
use pyo3_async::{AllowThreads, AsyncGenerator};

use crate::coroutines::{suspend_once, DropGuard, Probe};
use crate::{backend, tokio};

fn generator<S, T>(stream: S, name: Option<&str>) -> PyResult<AsyncGenerator>
where
    S: Stream<Item = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    let generator = AsyncGenerator::new(stream);
    Ok(match backend(name)? {
        Some(backend) => generator.with_backend(backend),
        None => generator,
    })
}

/// Yields 0..n, every item ready at once.
#[pyfunction]
#[pyo3(signature = (n, backend = None))]
fn count(n: u64, backend: Option<&str>) -> PyResult<AsyncGenerator> {
    generator(futures::stream::iter((0..n).map(PyResult::Ok)), backend)
}

/// Yields 0..n, each item after one suspension (woken at once).
#[pyfunction]
fn count_suspending(n: u64) -> AsyncGenerator {
    AsyncGenerator::new(futures::stream::iter(0..n).then(|i| async move {
        suspend_once().await;
        PyResult::Ok(i)
    }))
}

/// Yields 0..n, each item sent by a tokio task through a channel (woken from tokio threads).
#[pyfunction]
#[pyo3(signature = (n, allow_threads = false))]
fn count_from_tokio(n: u64, allow_threads: bool) -> PyResult<AsyncGenerator> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio().spawn(async move {
        for i in 0..n {
            if tx.send(PyResult::Ok(i)).await.is_err() {
                break;
            }
        }
    });
    let items = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    if allow_threads {
        generator(AllowThreads::new(items), None)
    } else {
        generator(items, None)
    }
}

/// Yields 0..k, then raises `exception`.
#[pyfunction]
fn fail_after(k: u64, exception: Py<PyAny>) -> AsyncGenerator {
    let error = futures::stream::once(async move {
        suspend_once().await;
        Python::attach(|py| Err(PyErr::from_value(exception.into_bound(py))))
    });
    AsyncGenerator::new(futures::stream::iter((0..k).map(PyResult::Ok)).chain(error))
}

/// Yields 0..k, then panics.
#[pyfunction]
fn panic_after(k: u64, message: String) -> AsyncGenerator {
    let panic = futures::stream::once(async move {
        suspend_once().await;
        panic!("{message}");
    });
    AsyncGenerator::new(futures::stream::iter((0..k).map(PyResult::Ok)).chain(panic))
}

/// Yields 0..k, then stays pending; the probe tells when the stream is dropped.
#[pyfunction]
fn endless(k: u64, probe: Py<Probe>) -> AsyncGenerator {
    let guard = DropGuard(Arc::new(probe));
    let pending = futures::stream::poll_fn(move |_| {
        guard.0.get().polled.fetch_add(1, Ordering::SeqCst);
        Poll::<Option<PyResult<u64>>>::Pending
    });
    AsyncGenerator::new(futures::stream::iter((0..k).map(PyResult::Ok)).chain(pending))
}

/// Yields what `callback()` returns, called at each poll, until it returns `None`: a stream
/// whose poll runs Python code that can reach back into its own generator.
#[pyfunction]
fn calls_back(callback: Py<PyAny>) -> AsyncGenerator {
    AsyncGenerator::new(futures::stream::poll_fn(move |_| {
        Poll::Ready(Python::attach(|py| match callback.call0(py) {
            Ok(item) if item.is_none(py) => None,
            Ok(item) => Some(Ok(item)),
            Err(err) => Some(Err(err)),
        }))
    }))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(calls_back, m)?)?;
    m.add_function(wrap_pyfunction!(count, m)?)?;
    m.add_function(wrap_pyfunction!(count_from_tokio, m)?)?;
    m.add_function(wrap_pyfunction!(count_suspending, m)?)?;
    m.add_function(wrap_pyfunction!(fail_after, m)?)?;
    m.add_function(wrap_pyfunction!(panic_after, m)?)?;
    m.add_function(wrap_pyfunction!(endless, m)?)?;
    Ok(())
}

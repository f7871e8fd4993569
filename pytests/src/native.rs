//! What Python's own tools see of a Rust coroutine (test_native.py): forgotten tasks freed by
//! the collector, the never-awaited warning.

use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::prelude::*;
use pyo3_async::PyFuture;

/// Futures dropped so far (whatever dropped them: completion, cancellation, the collector).
static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// Counts its drop, and notes where it happened.
struct DropCounter;

impl Drop for DropCounter {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

/// How many futures of this module were dropped so far.
#[pyfunction]
fn futures_dropped() -> usize {
    DROPPED.load(Ordering::SeqCst)
}

/// Pending for ever, keeping no waker: once its task is forgotten, nothing can wake it.
#[pyo3_async::pyfunction]
async fn parks_forever() {
    let _counter = DropCounter;
    std::future::pending::<()>().await;
}

/// Pending for ever on a future of the running asyncio loop that only it holds, awaited
/// through delegation (the task parks on that very future).
#[pyo3_async::pyfunction(asyncio)]
async fn awaits_its_own_future() -> PyResult<()> {
    let _counter = DropCounter;
    let future = Python::attach(|py| {
        let future = py
            .import("asyncio")?
            .call_method0("get_running_loop")?
            .call_method0("create_future")?;
        PyFuture::new(&future)
    })?;
    future.await?;
    Ok(())
}

/// Pending for ever with a waker it keeps in its own state: a root the collector cannot see.
#[pyo3_async::pyfunction]
async fn keeps_its_own_waker() {
    let _counter = DropCounter;
    let (_sender, receiver) = futures::channel::oneshot::channel::<()>();
    let _ = receiver.await;
}

/// Awaits `awaitable` in its own task (delegation): what it awaits is `cr_await`.
#[pyo3_async::pyfunction]
async fn delegate_to(awaitable: Py<PyAny>) -> PyResult<Py<PyAny>> {
    let future = Python::attach(|py| PyFuture::new(awaitable.bind(py)))?;
    future.await
}

/// The span its poll runs in, with its fields, before and after a suspension (feature
/// `tracing`).
#[pyo3_async::pyfunction]
async fn span_during_poll() -> (Option<SpanFields>, Option<SpanFields>) {
    let before = crate::spans::current_span_fields();
    crate::coroutines::suspend_once().await;
    (before, crate::spans::current_span_fields())
}

type SpanFields = (&'static str, std::collections::HashMap<String, String>);

/// `n` items: the span each item's poll runs in (feature `tracing`).
#[pyo3_async::pyfunction(generator)]
async fn spans_in_generator(n: usize) -> impl futures::Stream<Item = PyResult<SpanFields>> + Send {
    use futures::StreamExt;
    futures::stream::iter(0..n).then(|_| async {
        crate::coroutines::suspend_once().await;
        crate::spans::current_span_fields()
            .ok_or_else(|| pyo3::exceptions::PyAssertionError::new_err("no span"))
    })
}

/// Returns its argument: the argument lives in the Rust future until the first poll.
#[pyo3_async::pyfunction]
async fn echo(value: Py<PyAny>) -> Py<PyAny> {
    value
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(futures_dropped, m)?)?;
    // What a user adds in one line.
    m.add_function(wrap_pyfunction!(pyo3_async::py_stats, m)?)?;
    m.add_function(wrap_pyfunction!(parks_forever, m)?)?;
    m.add_function(wrap_pyfunction!(awaits_its_own_future, m)?)?;
    m.add_function(wrap_pyfunction!(keeps_its_own_waker, m)?)?;
    m.add_function(wrap_pyfunction!(echo, m)?)?;
    m.add_function(wrap_pyfunction!(delegate_to, m)?)?;
    m.add_function(wrap_pyfunction!(span_during_poll, m)?)?;
    m.add_function(wrap_pyfunction!(spans_in_generator, m)?)?;
    Ok(())
}

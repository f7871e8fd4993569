//! Python awaitables awaited from Rust or spawned from tokio (test_delegation.py, test_stress.py).

use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3_async::{Coroutine, EventLoop, PyAsyncIter, PyFuture};

use crate::tokio;
use crate::wakers::Trigger;

/// Awaits `first` and then `second` inside one Rust future polled by one coroutine; used to
/// show that a future can keep several wake sources (here: two triggers).
#[pyfunction]
fn both(first: Py<Trigger>, second: Py<Trigger>) -> Coroutine {
    Coroutine::new(async move {
        let mut a = pin!(first.get().fired());
        let mut b = pin!(second.get().fired());
        futures::future::join(a.as_mut(), b.as_mut()).await;
        PyResult::Ok("both")
    })
}

/// Awaits a Python awaitable inside the coroutine (delegation) and returns its result.
#[pyfunction]
fn await_py(awaitable: &Bound<'_, PyAny>) -> PyResult<Coroutine> {
    let future = PyFuture::new(awaitable)?;
    Ok(Coroutine::new(future))
}

/// Awaits several awaitables at once (a join): they run as tasks of the coroutine's loop.
#[pyfunction]
fn await_all(awaitables: Vec<Bound<'_, PyAny>>) -> PyResult<Coroutine> {
    let futures = awaitables
        .iter()
        .map(PyFuture::new)
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Coroutine::new(async move {
        futures::future::try_join_all(futures).await
    }))
}

/// Awaits several awaitables one after the other, summing their (integer) results.
#[pyfunction]
fn await_in_sequence(awaitables: Vec<Bound<'_, PyAny>>) -> PyResult<Coroutine> {
    let futures = awaitables
        .iter()
        .map(|awaitable| PyFuture::new(awaitable).map(PyFuture::extract::<i64>))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Coroutine::new(async move {
        let mut total = 0;
        for future in futures {
            total += future.await?;
        }
        Ok(total)
    }))
}

/// Awaits `awaitable` with a tokio timer racing it: returns `"timeout"` if the timer wins.
/// With `started`, the timer starts once that trigger fires (the awaitable fires it when it
/// runs): a timer that fired first would cancel an awaitable that never ran.
#[pyfunction]
#[pyo3(signature = (awaitable, seconds, started = None))]
fn await_with_timeout(
    awaitable: &Bound<'_, PyAny>,
    seconds: f64,
    started: Option<Py<Trigger>>,
) -> PyResult<Coroutine> {
    let future = PyFuture::new(awaitable)?;
    let timer = async move {
        if let Some(started) = &started {
            started.get().fired().await;
        }
        let sleep = async move { tokio::time::sleep(Duration::from_secs_f64(seconds)).await };
        let _ = tokio().spawn(sleep).await;
    };
    Ok(Coroutine::new(async move {
        futures::pin_mut!(timer);
        futures::pin_mut!(future);
        match futures::future::select(future, timer).await {
            futures::future::Either::Left((result, _)) => result,
            futures::future::Either::Right(_) => {
                Python::attach(|py| Ok("timeout".into_pyobject(py)?.into_any().unbind()))
            }
        }
    }))
}

/// Awaits a Python awaitable without a coroutine around it: a clear error.
#[pyfunction]
fn await_outside_coroutine(awaitable: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let future = PyFuture::new(awaitable)?;
    awaitable
        .py()
        .detach(|| futures::executor::block_on(future))
}

/// Schedules `awaitable` on the current loop from a tokio task and returns its result.
#[pyfunction]
fn spawn_from_tokio(py: Python<'_>, awaitable: Py<PyAny>) -> PyResult<Coroutine> {
    let event_loop = EventLoop::current(py)?;
    let task = tokio().spawn(async move {
        let future = Python::attach(|py| event_loop.spawn(awaitable.bind(py)))?;
        future.await
    });
    Ok(Coroutine::new(async move {
        task.await
            .map_err(|err| PyValueError::new_err(err.to_string()))?
    }))
}

/// Like `spawn_from_tokio`, but the tokio thread never attaches: `coroutine_function()` is
/// called on the loop thread (`EventLoop::spawn_with`).
#[pyfunction]
fn spawn_with_from_tokio(py: Python<'_>, coroutine_function: Py<PyAny>) -> PyResult<Coroutine> {
    Ok(spawn_with_on(EventLoop::current(py)?, coroutine_function))
}

/// From a tokio task, `event_loop.spawn_with(coroutine_function)`; its result, awaitable.
pub(crate) fn spawn_with_on(event_loop: EventLoop, coroutine_function: Py<PyAny>) -> Coroutine {
    let task = tokio().spawn(async move {
        event_loop
            .spawn_with(move |py| coroutine_function.bind(py).call0())
            .await
    });
    Coroutine::new(async move {
        task.await
            .map_err(|err| PyValueError::new_err(err.to_string()))?
    })
}

/// Collects every item of a Python async iterable through `PyAsyncIter`, consumed on tokio;
/// `on_item(item)` is called on the tokio thread as each arrives.
#[pyfunction]
#[pyo3(signature = (iterable, capacity = 64, on_item = None))]
fn collect_async_iter(
    py: Python<'_>,
    iterable: &Bound<'_, PyAny>,
    capacity: usize,
    on_item: Option<Py<PyAny>>,
) -> PyResult<Coroutine> {
    let mut items = PyAsyncIter::with_capacity(&EventLoop::current(py)?, iterable, capacity)?;
    let task = tokio().spawn(async move {
        let mut collected = Vec::new();
        while let Some(item) = items.next().await {
            let item = item?;
            if let Some(on_item) = &on_item {
                Python::attach(|py| on_item.call1(py, (item.clone_ref(py),)))?;
            }
            collected.push(item);
        }
        PyResult::Ok(collected)
    });
    Ok(Coroutine::new(async move {
        task.await
            .map_err(|err| PyValueError::new_err(err.to_string()))?
    }))
}

/// Takes `n` items of a Python async iterable through `PyAsyncIter`, then drops the stream.
#[pyfunction]
fn take_async_iter(py: Python<'_>, iterable: &Bound<'_, PyAny>, n: usize) -> PyResult<Coroutine> {
    let items = PyAsyncIter::with_capacity(&EventLoop::current(py)?, iterable, 1)?;
    Ok(Coroutine::new(async move {
        items
            .take(n)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<PyResult<Vec<_>>>()
    }))
}

/// Like `spawn_from_tokio`, but attaching through `pyo3_async::attach_unless_exiting`: safe
/// while the process exits (the call then fails instead of aborting the process).
#[pyfunction]
fn spawn_guarded_from_tokio(py: Python<'_>, coroutine_function: Py<PyAny>) -> PyResult<Coroutine> {
    let event_loop = EventLoop::current(py)?;
    let task = tokio().spawn(async move {
        let future = pyo3_async::attach_unless_exiting(|py| {
            event_loop.spawn(&coroutine_function.bind(py).call0()?)
        })
        .unwrap_or_else(|| Err(PyValueError::new_err("exiting")))?;
        future.await
    });
    Ok(Coroutine::new(async move {
        task.await
            .map_err(|err| PyValueError::new_err(err.to_string()))?
    }))
}

/// A tokio task spawns `coroutine_function()` on the loop and drops the `PyFuture` after
/// yielding to tokio `yields` times (about a microsecond each) unless it finished: the drop
/// cancels the Python task, racing its completion. Returns whether the Python side finished
/// first.
#[pyfunction]
fn drop_after(py: Python<'_>, coroutine_function: Py<PyAny>, yields: u64) -> PyResult<Coroutine> {
    let event_loop = EventLoop::current(py)?;
    let task = tokio().spawn(async move {
        let future = event_loop.spawn_with(move |py| coroutine_function.bind(py).call0());
        tokio::select! {
            outcome = future => outcome.map(|_| true),
            () = async {
                for _ in 0..yields {
                    tokio::task::yield_now().await;
                }
            } => Ok(false),
        }
    });
    Ok(Coroutine::new(async move {
        task.await
            .map_err(|err| PyValueError::new_err(err.to_string()))?
    }))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(both, m)?)?;
    m.add_function(wrap_pyfunction!(await_py, m)?)?;
    m.add_function(wrap_pyfunction!(await_all, m)?)?;
    m.add_function(wrap_pyfunction!(await_in_sequence, m)?)?;
    m.add_function(wrap_pyfunction!(await_with_timeout, m)?)?;
    m.add_function(wrap_pyfunction!(await_outside_coroutine, m)?)?;
    m.add_function(wrap_pyfunction!(spawn_from_tokio, m)?)?;
    m.add_function(wrap_pyfunction!(spawn_with_from_tokio, m)?)?;
    m.add_function(wrap_pyfunction!(spawn_guarded_from_tokio, m)?)?;
    m.add_function(wrap_pyfunction!(drop_after, m)?)?;
    m.add_function(wrap_pyfunction!(collect_async_iter, m)?)?;
    m.add_function(wrap_pyfunction!(take_async_iter, m)?)?;
    Ok(())
}

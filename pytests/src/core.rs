//! Test functions for the core's promises: wakers that never wait for the interpreter, the
//! delegation rule, contexts, PEP 479, destructors that panic.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration};
use pyo3::prelude::*;
use pyo3::types::PyModule;
use pyo3_async::{AsyncGenerator, Coroutine, EventLoop, PyContext, PyFuture};

use crate::awaiting::spawn_with_on;
use crate::tokio;
use crate::wakers::Trigger;

/// A lock of "another library" (event-listener, async-channel and smol wake while holding
/// theirs): a thread fires `trigger` while holding it, and this thread — attached to the
/// interpreter, as a loop thread is — takes it meanwhile. A waker that waits for the
/// interpreter deadlocks here; returns whether the lock was had within `seconds`.
#[pyfunction]
fn wake_under_foreign_lock(trigger: Py<Trigger>, seconds: f64) -> bool {
    let lock = Arc::new(Mutex::new(()));
    let held = Arc::new(AtomicBool::new(false));
    let thread = {
        let (lock, held) = (Arc::clone(&lock), Arc::clone(&held));
        std::thread::spawn(move || {
            let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            held.store(true, Ordering::SeqCst);
            trigger.get().fire_now();
        })
    };
    while !held.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    // Still attached: the firing thread cannot get the interpreter from us.
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let had = loop {
        if lock.try_lock().is_ok() {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::yield_now();
    };
    if had {
        let _ = thread.join();
    }
    had
}

/// Races `awaitable` against a tokio timer that was first polled in an earlier step: the
/// timer must fire while the awaitable still runs (returns `"timer"`).
#[pyfunction]
fn race_with_earlier_timer(awaitable: &Bound<'_, PyAny>, seconds: f64) -> PyResult<Coroutine> {
    let python = PyFuture::new(awaitable)?;
    Ok(Coroutine::new(async move {
        // Started at the first poll, not at the call: a timer that fired before the
        // coroutine ran would leave nothing to race.
        let sleep = async move { tokio::time::sleep(Duration::from_secs_f64(seconds)).await };
        let mut timer = pin!(tokio().spawn(sleep));
        // Step one: the timer registers this step's waker, and the future yields. A timer
        // that has fired already (a stalled machine) has won: polled again, its handle panics.
        let mut yielded = false;
        let fired_early = poll_fn(|cx| {
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            if yielded {
                return Poll::Ready(false);
            }
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        })
        .await;
        if fired_early {
            return Ok("timer");
        }
        // Step two: the timer, polled again, and the awaitable together.
        let python = pin!(python);
        match futures::future::select(timer, python).await {
            futures::future::Either::Left(_) => Ok("timer"),
            futures::future::Either::Right(_) => Ok("awaitable"),
        }
    }))
}

/// A future that fails with `StopIteration(value)`.
#[pyfunction]
fn raise_stop_iteration(value: Py<PyAny>) -> Coroutine {
    Coroutine::new(async move { PyResult::<()>::Err(PyStopIteration::new_err((value,))) })
}

/// A stream whose second item is a `StopAsyncIteration` error (or `StopIteration`).
#[pyfunction]
fn stream_raising_stop(sync: bool) -> AsyncGenerator {
    let stop = move || {
        if sync {
            PyStopIteration::new_err(())
        } else {
            PyStopAsyncIteration::new_err(())
        }
    };
    AsyncGenerator::new(futures::stream::iter([Ok(1), Err(stop()), Ok(3)]))
}

/// Panics in its destructor.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("the stream's destructor panicked");
    }
}

/// A stream of `items` items whose destructor panics (and which never ends unless `ends`).
#[pyfunction]
fn stream_panics_on_drop(items: u32, ends: bool) -> AsyncGenerator {
    guarded_stream(items, ends, PanicsOnDrop)
}

/// A stream of `items` items (never ending unless `ends`) that owns `guard`: its destructor
/// runs where the stream is dropped.
fn guarded_stream(items: u32, ends: bool, guard: impl Send + 'static) -> AsyncGenerator {
    let stream = futures::stream::iter(0..items).map(move |item| {
        let _ = &guard;
        PyResult::Ok(item)
    });
    if ends {
        AsyncGenerator::new(stream.boxed())
    } else {
        AsyncGenerator::new(stream.chain(futures::stream::pending()).boxed())
    }
}

/// Calls `callback()` when dropped (the interpreter attached, as a stream is dropped).
struct CallsOnDrop(Py<PyAny>);

impl Drop for CallsOnDrop {
    fn drop(&mut self) {
        Python::attach(|py| {
            if let Err(err) = self.0.call0(py) {
                err.write_unraisable(py, None);
            }
        });
    }
}

/// A stream of `items` items (never ending unless `ends`) whose destructor calls `on_drop()`:
/// Python code that may reach back into the generator the stream is in.
#[pyfunction]
fn stream_calls_on_drop(items: u32, ends: bool, on_drop: Py<PyAny>) -> AsyncGenerator {
    guarded_stream(items, ends, CallsOnDrop(on_drop))
}

/// From a tokio thread, runs `coroutine_function()` through `spawn_with`, on a handle that
/// carries this task's context when `capture` is true; returns the awaitable's result.
#[pyfunction]
fn spawn_with_context(
    py: Python<'_>,
    coroutine_function: Py<PyAny>,
    capture: bool,
) -> PyResult<Coroutine> {
    let mut event_loop = EventLoop::current(py)?;
    if capture {
        event_loop = event_loop.with_context(PyContext::current(py)?);
    }
    Ok(spawn_with_on(event_loop, coroutine_function))
}

/// Whether `pyo3_async::attach_unless_exiting` lets this thread in (an `atexit` hook asks).
#[pyfunction]
fn guarded_attach_works() -> bool {
    pyo3_async::attach_unless_exiting(|_| ()).is_some()
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(wake_under_foreign_lock, m)?)?;
    m.add_function(wrap_pyfunction!(race_with_earlier_timer, m)?)?;
    m.add_function(wrap_pyfunction!(raise_stop_iteration, m)?)?;
    m.add_function(wrap_pyfunction!(stream_raising_stop, m)?)?;
    m.add_function(wrap_pyfunction!(stream_panics_on_drop, m)?)?;
    m.add_function(wrap_pyfunction!(stream_calls_on_drop, m)?)?;
    m.add_function(wrap_pyfunction!(spawn_with_context, m)?)?;
    m.add_function(wrap_pyfunction!(guarded_attach_works, m)?)?;
    Ok(())
}

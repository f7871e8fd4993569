//! The `tokio` feature (test_tokio.py): tokio timers and sockets in futures the Python loop
//! drives, and cancellation that reaches everything they own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Guards alive inside cancelled work: each counts itself while it exists.
static ALIVE: AtomicUsize = AtomicUsize::new(0);
/// Ticks of `ticker`s (inline or spawned): they stop when their work is dropped.
static TICKS: AtomicUsize = AtomicUsize::new(0);

struct Alive;

impl Alive {
    fn new() -> Self {
        ALIVE.fetch_add(1, Ordering::SeqCst);
        Alive
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        ALIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A tokio timer, polled by the Python loop inside the runtime's context: no spawn.
#[pyo3_async::pyfunction(tokio)]
async fn tokio_sleep(seconds: f64, value: Py<PyAny>) -> Py<PyAny> {
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    value
}

/// A `tokio::net` round trip on 127.0.0.1: a listener, a client, an echo.
#[pyo3_async::pyfunction(tokio)]
async fn tokio_echo(payload: Vec<u8>) -> PyResult<Vec<u8>> {
    let io = |err: std::io::Error| PyOSError::new_err(err.to_string());
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(io)?;
    let address = listener.local_addr().map_err(io)?;
    let server = async {
        let (mut socket, _) = listener.accept().await?;
        let mut received = Vec::new();
        socket.read_to_end(&mut received).await?;
        socket.write_all(&received).await?;
        std::io::Result::Ok(())
    };
    let client = async {
        let mut socket = TcpStream::connect(address).await?;
        socket.write_all(&payload).await?;
        socket.shutdown().await?;
        let mut echoed = Vec::new();
        socket.read_to_end(&mut echoed).await?;
        std::io::Result::Ok(echoed)
    };
    let (served, echoed) = tokio::join!(server, client);
    served.map_err(io)?;
    echoed.map_err(io)
}

/// Ticks every millisecond on a tokio timer, for ever, owning an `Alive` guard: cancelled
/// from Python, the future and the guard are dropped.
#[pyo3_async::pyfunction(tokio)]
async fn tokio_ticker() {
    let _alive = Alive::new();
    loop {
        tokio::time::sleep(Duration::from_millis(1)).await;
        TICKS.fetch_add(1, Ordering::SeqCst);
    }
}

/// The same ticker as a task on tokio's workers, through `pyo3_async::tokio::spawn`:
/// cancelling the Python side drops the handle, which aborts the task.
#[pyo3_async::pyfunction]
async fn spawned_ticker() -> PyResult<()> {
    pyo3_async::tokio::spawn(async {
        let _alive = Alive::new();
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            TICKS.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await
}

/// A spawned task that panics: a `PanicError` for the awaiting Python code.
#[pyo3_async::pyfunction]
async fn spawned_panic() -> PyResult<()> {
    pyo3_async::tokio::spawn(async { panic!("boom on a tokio worker") }).await
}

/// Items from a tokio interval, as an async generator polled in the runtime's context.
#[pyo3_async::pyfunction(tokio, generator)]
async fn tokio_interval(count: u32) -> impl futures::Stream<Item = PyResult<u32>> + Send {
    let interval = tokio::time::interval(Duration::from_millis(1));
    futures::stream::unfold((0, interval), move |(i, mut interval)| async move {
        if i == count {
            return None;
        }
        interval.tick().await;
        Some((Ok(i), (i + 1, interval)))
    })
}

/// Cleanups that destructors spawned on tokio and that ran (a pooled connection returning
/// itself, as sqlx's does).
static CLEANED_UP: AtomicUsize = AtomicUsize::new(0);

/// Spawns its cleanup on tokio when dropped, as a pooled connection does: outside the
/// runtime's context `tokio::spawn` panics and the cleanup never runs.
struct ReturnsToPool;

impl Drop for ReturnsToPool {
    fn drop(&mut self) {
        tokio::spawn(async {
            CLEANED_UP.fetch_add(1, Ordering::SeqCst);
        });
    }
}

/// Holds a `ReturnsToPool` while it waits on a tokio timer; `complete` ends the wait soon.
#[pyo3_async::pyfunction(tokio)]
async fn pooled_query(complete: bool) {
    let _connection = ReturnsToPool;
    let wait = if complete { 1 } else { 60_000 };
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// The same as a generator that holds the connection between items.
#[pyo3_async::pyfunction(tokio, generator)]
async fn pooled_rows() -> impl futures::Stream<Item = PyResult<u32>> + Send {
    futures::stream::unfold(Some(ReturnsToPool), |connection| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        connection.map(|connection| (Ok(0), Some(connection)))
    })
}

#[pyfunction]
fn cleaned_up() -> usize {
    CLEANED_UP.load(Ordering::SeqCst)
}

/// How many `Alive` guards exist, and how many ticks happened.
#[pyfunction]
fn tokio_alive() -> usize {
    ALIVE.load(Ordering::SeqCst)
}

#[pyfunction]
fn tokio_ticks() -> usize {
    TICKS.load(Ordering::SeqCst)
}

/// Marks `local` (a `threading.local`) in one attach: whether the mark is there in the next,
/// that is, whether the thread attached with the same thread state both times.
fn mark_survives(local: &Py<PyAny>) -> PyResult<bool> {
    Python::attach(|py| local.bind(py).setattr("mark", true))?;
    Python::attach(|py| local.bind(py).hasattr("mark"))
}

/// Thread states kept by foreign threads (`keep_thread_state`), once the coroutine is bound
/// to its loop (which is where the limited API learns the interpreter): on a new thread that
/// keeps one explicitly, `(kept, released)`, and whether a worker and a blocking thread of the
/// default runtime kept one (they must not).
#[pyo3_async::pyfunction(tokio)]
async fn thread_states_kept(local: Py<PyAny>) -> PyResult<((bool, bool), bool, bool)> {
    tokio::task::yield_now().await;
    let local = std::sync::Arc::new(local);
    let explicit = {
        let local = std::sync::Arc::clone(&local);
        tokio::task::spawn_blocking(move || {
            std::thread::spawn(move || -> PyResult<(bool, bool)> {
                pyo3_async::keep_thread_state();
                let kept = mark_survives(&local)?;
                pyo3_async::release_thread_state();
                let gone = !Python::attach(|py| local.bind(py).hasattr("mark"))?;
                Ok((kept, gone))
            })
            .join()
        })
    };
    let explicit = match explicit.await {
        Ok(Ok(result)) => result?,
        _ => return Err(PyOSError::new_err("the thread panicked")),
    };
    let on_worker = {
        let local = std::sync::Arc::clone(&local);
        pyo3_async::tokio::spawn(async move { mark_survives(&local) }).await??
    };
    let on_blocking_thread = tokio::task::spawn_blocking(move || mark_survives(&local))
        .await
        .map_err(|_| PyOSError::new_err("the blocking task failed"))??;
    Ok((explicit, on_worker, on_blocking_thread))
}

/// `n` tasks on the default runtime's workers, 256 at a time: each reads `var` (a
/// `ContextVar`) in a fresh attach, sets it to its own number, and hands `read(var)` to the
/// loop through `EventLoop::spawn` (which copies the calling thread's context). Returns how
/// many saw another task's value, either before setting theirs or in their Python task.
#[pyfunction]
fn context_leaks(
    py: Python<'_>,
    var: Py<PyAny>,
    read: Py<PyAny>,
    n: usize,
) -> PyResult<pyo3_async::Coroutine> {
    use futures::{StreamExt, TryStreamExt};
    let event_loop = pyo3_async::EventLoop::current(py)?;
    let shared = std::sync::Arc::new((var, read));
    Ok(pyo3_async::Coroutine::new(async move {
        futures::stream::iter(0..n)
            .map(move |i| {
                let (event_loop, shared) = (event_loop.clone(), std::sync::Arc::clone(&shared));
                pyo3_async::tokio::spawn(async move {
                    let (clean, call) = Python::attach(|py| -> PyResult<_> {
                        let (var, read) = (shared.0.bind(py), shared.1.bind(py));
                        let clean = var.call_method1("get", (py.None(),))?.is_none();
                        var.call_method1("set", (i,))?;
                        Ok((clean, event_loop.spawn(&read.call1((var,))?)?))
                    })?;
                    let seen = call.await?;
                    let mine = Python::attach(|py| seen.bind(py).extract::<usize>())? == i;
                    PyResult::Ok(clean && mine)
                })
            })
            .buffer_unordered(256)
            .map(|joined| joined.and_then(|isolated| isolated))
            .try_fold(0usize, |leaks, isolated| async move {
                Ok(leaks + usize::from(!isolated))
            })
            .await
    }))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(context_leaks, m)?)?;
    m.add_function(wrap_pyfunction!(thread_states_kept, m)?)?;
    m.add_function(wrap_pyfunction!(tokio_sleep, m)?)?;
    m.add_function(wrap_pyfunction!(tokio_echo, m)?)?;
    m.add_function(wrap_pyfunction!(tokio_ticker, m)?)?;
    m.add_function(wrap_pyfunction!(spawned_ticker, m)?)?;
    m.add_function(wrap_pyfunction!(spawned_panic, m)?)?;
    m.add_function(wrap_pyfunction!(tokio_interval, m)?)?;
    m.add_function(wrap_pyfunction!(tokio_alive, m)?)?;
    m.add_function(wrap_pyfunction!(tokio_ticks, m)?)?;
    m.add_function(wrap_pyfunction!(pooled_query, m)?)?;
    m.add_function(wrap_pyfunction!(pooled_rows, m)?)?;
    m.add_function(wrap_pyfunction!(cleaned_up, m)?)?;
    Ok(())
}

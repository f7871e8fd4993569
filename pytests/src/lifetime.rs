//! A program's whole life with tokio (test_lifetime.py): runtimes a library names, tasks
//! aborted under the awaiter, `init`'s errors, the owned runtime's shutdown at exit, and
//! forked children; synchronous callers that wait for Rust futures.

use std::sync::OnceLock;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::{Builder, Runtime};

use crate::wakers::Latch;

/// A runtime of the library's own, as an I/O runtime: its threads are named for the test.
fn io_runtime() -> &'static Runtime {
    static IO: OnceLock<Runtime> = OnceLock::new();
    IO.get_or_init(|| named_runtime("pytests-io"))
}

fn compute_runtime() -> &'static Runtime {
    static COMPUTE: OnceLock<Runtime> = OnceLock::new();
    COMPUTE.get_or_init(|| named_runtime("pytests-compute"))
}

fn named_runtime(name: &str) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn thread_name() -> Option<String> {
    std::thread::current().name().map(str::to_owned)
}

/// Polled in the I/O runtime's context (the option names it): what `tokio::spawn` reaches
/// runs on that runtime's threads, and its timers are that runtime's.
#[pyo3_async::pyfunction(tokio = io_runtime)]
async fn io_runtime_thread() -> PyResult<Option<String>> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    tokio::spawn(async { thread_name() })
        .await
        .map_err(|err| pyo3::exceptions::PyRuntimeError::new_err(err.to_string()))
}

/// A task on the compute runtime, by `spawn_on`.
#[pyo3_async::pyfunction]
async fn compute_runtime_thread() -> PyResult<Option<String>> {
    pyo3_async::tokio::spawn_on(compute_runtime(), async { thread_name() }).await
}

/// A task of the process-wide runtime, aborted while its handle is awaited.
#[pyo3_async::pyfunction]
async fn aborted_task() -> PyResult<()> {
    let task = pyo3_async::tokio::spawn(std::future::pending::<()>());
    task.abort();
    task.await
}

/// A value from a task of the process-wide runtime, after a tokio timer.
#[pyo3_async::pyfunction(tokio)]
async fn spawned_value(value: Py<PyAny>) -> PyResult<Py<PyAny>> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    pyo3_async::tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        value
    })
    .await
}

/// `pyo3_async::tokio::init` with a default builder: its errors arrive as `RuntimeError`.
#[pyfunction]
fn init_runtime() -> PyResult<()> {
    let mut builder = Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    pyo3_async::tokio::init(builder)?;
    Ok(())
}

/// Calls `log(message)` when dropped, attached unless the interpreter is exiting (at exit:
/// while the runtime shuts down, which is before), as code on the runtime's threads should.
struct LogOnDrop {
    log: Py<PyAny>,
    message: &'static str,
}

impl Drop for LogOnDrop {
    fn drop(&mut self) {
        pyo3_async::attach_unless_exiting(|py| {
            if let Err(err) = self.log.call1(py, (self.message,)) {
                err.write_unraisable(py, None);
            }
        });
    }
}

/// A task of the process-wide runtime that, in its poll, calls `time.sleep(seconds)` through
/// `attach_unless_exiting` and then logs: a long poll that calls Python, as exit begins.
#[pyfunction]
fn python_call_in_a_task_at_exit(log: Py<PyAny>, seconds: f64) {
    std::mem::forget(pyo3_async::tokio::spawn(async move {
        pyo3_async::attach_unless_exiting(|py| {
            let slept = py
                .import("time")
                .and_then(|time| time.call_method1("sleep", (seconds,)))
                .and_then(|_| log.call1(py, ("slept",)));
            if let Err(err) = slept {
                err.write_unraisable(py, None);
            }
        });
    }));
}

/// Leaves a task of the process-wide runtime pending for ever, holding a guard that logs
/// when dropped: the runtime's shutdown at exit drops it.
#[pyfunction]
fn leave_task_at_exit(log: Py<PyAny>) {
    let guard = LogOnDrop {
        log,
        message: "task dropped at exit",
    };
    std::mem::forget(pyo3_async::tokio::spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    }));
}

/// Leaves a blocking task of the process-wide runtime sleeping for `seconds`, and bounds the
/// wait for it at exit to `timeout` seconds.
#[pyfunction]
fn leave_blocking_task_at_exit(seconds: f64, timeout: f64) {
    pyo3_async::tokio::set_shutdown_timeout(Duration::from_secs_f64(timeout));
    drop(pyo3_async::tokio::handle().spawn_blocking(move || {
        std::thread::sleep(Duration::from_secs_f64(seconds));
    }));
}

/// A thread that stays inside `attach_unless_exiting` (detached again, blocked on the latch)
/// until the latch is set or `timeout` passes: exit waits for such threads.
#[pyfunction]
fn hold_exit_guard(latch: Py<Latch>, timeout: f64) {
    std::thread::spawn(move || {
        pyo3_async::attach_unless_exiting(|py| py.detach(|| latch.get().block(timeout)));
    });
}

/// A blocking API over an async one: a tokio timer, waited for with the interpreter released.
#[pyfunction]
fn sync_sleep(py: Python<'_>, seconds: f64, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
    pyo3_async::block_on(
        py,
        pyo3_async::tokio::in_runtime(async move {
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            value
        }),
    )
}

/// Waits, from synchronous code, for `awaitable` run on `event_loop` (an asyncio loop running
/// in another thread).
#[pyfunction]
fn sync_await_on(
    py: Python<'_>,
    event_loop: &Bound<'_, PyAny>,
    awaitable: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    let future = pyo3_async::EventLoop::asyncio(event_loop)?.spawn(awaitable)?;
    pyo3_async::block_on(py, future)?
}

/// Waits for ever for a future that logs when it is dropped (as Ctrl-C drops it).
#[pyfunction]
fn sync_wait_forever(py: Python<'_>, log: Py<PyAny>) -> PyResult<()> {
    let guard = LogOnDrop {
        log,
        message: "future dropped",
    };
    pyo3_async::block_on(py, async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    })
}

/// `LoopThread::block_on(awaitable)` on a new asyncio loop thread, stopped after.
#[pyfunction]
fn loop_thread_block_on(py: Python<'_>, awaitable: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let loop_thread = pyo3_async::LoopThread::start(py, pyo3_async::LoopKind::Asyncio)?;
    let result = loop_thread.block_on(awaitable);
    loop_thread.stop()?;
    result
}

/// `pyo3_async::run_with` on asyncio, with `factory` as the loop factory.
#[pyfunction]
fn run_with_loop_factory(py: Python<'_>, factory: Py<PyAny>) -> PyResult<()> {
    let options = pyo3_async::LoopOptions::new().loop_factory(factory);
    pyo3_async::run_with(py, pyo3_async::LoopKind::Asyncio, &options, async {
        PyResult::Ok(())
    })
}

/// `pyo3_async::run` on a new `kind` loop ("asyncio", "uvloop" or "trio"): 7.
#[pyfunction]
fn run_seven(py: Python<'_>, kind: &str) -> PyResult<u32> {
    let kind = pyo3_async::LoopKind::ALL
        .into_iter()
        .find(|known| known.name() == kind)
        .ok_or_else(|| pyo3::exceptions::PyValueError::new_err(format!("no loop {kind:?}")))?;
    pyo3_async::run(py, kind, async { PyResult::Ok(7) })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run_seven, m)?)?;
    m.add_function(wrap_pyfunction!(run_with_loop_factory, m)?)?;
    m.add_function(wrap_pyfunction!(sync_sleep, m)?)?;
    m.add_function(wrap_pyfunction!(sync_await_on, m)?)?;
    m.add_function(wrap_pyfunction!(sync_wait_forever, m)?)?;
    m.add_function(wrap_pyfunction!(loop_thread_block_on, m)?)?;
    m.add_function(wrap_pyfunction!(io_runtime_thread, m)?)?;
    m.add_function(wrap_pyfunction!(compute_runtime_thread, m)?)?;
    m.add_function(wrap_pyfunction!(aborted_task, m)?)?;
    m.add_function(wrap_pyfunction!(spawned_value, m)?)?;
    m.add_function(wrap_pyfunction!(init_runtime, m)?)?;
    m.add_function(wrap_pyfunction!(leave_task_at_exit, m)?)?;
    m.add_function(wrap_pyfunction!(leave_blocking_task_at_exit, m)?)?;
    m.add_function(wrap_pyfunction!(hold_exit_guard, m)?)?;
    m.add_function(wrap_pyfunction!(python_call_in_a_task_at_exit, m)?)?;
    m.add(
        "TaskAbortedError",
        m.py().get_type::<pyo3_async::tokio::TaskAbortedError>(),
    )?;
    Ok(())
}

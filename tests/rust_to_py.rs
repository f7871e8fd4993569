//! Rust futures and streams driven by Python event loops inside an embedded interpreter, with
//! wake-ups from tokio and smol (whose timers run on their own threads). Each test body runs
//! as the main task of a new loop, once per loop (`#[pyo3_async::test]`).

mod common;

use std::time::Duration;

use futures::StreamExt;
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3_async::{AllowThreads, AsyncGenerator, Coroutine, EventLoop, PyFuture};

use common::helpers;

fn tokio() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().expect("a tokio runtime"))
}

/// Runs `coroutine` as a Python task of the current loop; the task's outcome.
fn in_a_task(coroutine: Coroutine) -> PyResult<PyFuture> {
    Python::attach(|py| EventLoop::current(py)?.spawn(Bound::new(py, coroutine)?.as_any()))
}

#[pyo3_async::test]
async fn woken_by_tokio_and_smol() -> PyResult<()> {
    // The test's own coroutine, woken from a tokio worker...
    tokio()
        .spawn(async { tokio::time::sleep(Duration::from_millis(1)).await })
        .await
        .expect("tokio task");
    // ... and from smol's timer thread, polled with the interpreter released.
    AllowThreads::new(async {
        smol::Timer::after(Duration::from_millis(1)).await;
    })
    .await;
    // A coroutine awaited by a Python task, its value back in Rust.
    let value = in_a_task(Coroutine::new(async {
        smol::Timer::after(Duration::from_millis(1)).await;
        PyResult::Ok(7)
    }))?
    .extract::<i32>()
    .await?;
    assert_eq!(value, 7);
    Ok(())
}

#[pyo3_async::test]
async fn errors_and_panics_reach_python_as_exceptions() -> PyResult<()> {
    let failing = Coroutine::new(async {
        smol::Timer::after(Duration::from_millis(1)).await;
        Err::<(), _>(PyKeyError::new_err("missing"))
    });
    let err = in_a_task(failing)?.await.expect_err("the coroutine failed");
    Python::attach(|py| assert!(err.is_instance_of::<PyKeyError>(py), "{err}"));

    common::quiet_panic("panicked in the coroutine");
    let panicking = Coroutine::new(async move {
        smol::Timer::after(Duration::from_millis(1)).await;
        panic!("panicked in the coroutine");
        #[allow(unreachable_code)]
        PyResult::Ok(())
    });
    let err = in_a_task(panicking)?
        .await
        .expect_err("the coroutine panicked");
    Python::attach(|py| {
        assert!(err.is_instance_of::<pyo3_async::PanicError>(py));
        assert_eq!(err.value(py).to_string(), "panicked in the coroutine");
    });
    Ok(())
}

#[pyo3_async::test]
async fn streams_from_tokio_channels() -> PyResult<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio().spawn(async move {
        for i in 0..100u32 {
            tx.send(PyResult::Ok(i)).await.expect("receiver alive");
        }
    });
    let items = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let drained = Python::attach(|py| {
        let generator = Bound::new(py, AsyncGenerator::new(items.boxed()))?;
        let drain = helpers(py)?.getattr("drain")?.call1((generator,))?;
        EventLoop::current(py)?.spawn(&drain)
    })?;
    assert_eq!(
        drained.extract::<Vec<u32>>().await?,
        (0..100).collect::<Vec<_>>()
    );
    Ok(())
}

/// `pyo3_async::run` on this thread: the future's own output type comes back, and an error
/// keeps its Python type.
#[test]
fn run_returns_the_futures_output_or_its_error() {
    common::initialize();
    for kind in pyo3_async::LoopKind::ALL {
        let output = Python::attach(|py| {
            pyo3_async::run(py, kind, async {
                smol::Timer::after(Duration::from_millis(1)).await;
                PyResult::Ok(vec![1u8, 2, 3])
            })
        });
        assert_eq!(output.expect("it ran"), vec![1, 2, 3], "{kind}");
        let err = Python::attach(|py| {
            pyo3_async::run(py, kind, async {
                Err::<(), _>(PyKeyError::new_err("missing"))
            })
        })
        .expect_err("it failed");
        Python::attach(|py| assert!(err.is_instance_of::<PyKeyError>(py), "{kind}: {err}"));
    }
}

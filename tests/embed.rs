//! Python loops started from Rust: `LoopThread`, `pyo3_async::run` and `#[pyo3_async::test]`.

mod common;

use std::sync::Arc;

use pyo3::exceptions::{PyKeyError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3_async::{LoopKind, LoopThread};

use common::helpers;

fn threading_event(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    py.import("threading")?.getattr("Event")?.call0()
}

#[test]
fn block_on_returns_results_and_errors_keep_their_type() -> PyResult<()> {
    common::initialize();
    for kind in LoopKind::ALL {
        let loop_thread = Python::attach(|py| LoopThread::start(py, kind))?;
        assert_eq!(loop_thread.kind(), kind);
        Python::attach(|py| {
            let helpers = helpers(py)?;
            let sum = loop_thread.block_on(&helpers.getattr("add")?.call1((40, 2))?)?;
            assert_eq!(sum.extract::<i32>(py)?, 42, "{kind}");
            let failing = helpers
                .getattr("fail")?
                .call1((PyKeyError::new_err("missing").into_value(py),))?;
            let err = loop_thread.block_on(&failing).expect_err("it raised");
            assert!(err.is_instance_of::<PyKeyError>(py), "{kind}: {err}");
            PyResult::Ok(())
        })?;
        loop_thread.stop()?;
    }
    Ok(())
}

#[test]
fn block_on_from_the_loops_own_thread_is_an_error() -> PyResult<()> {
    common::initialize();
    for kind in LoopKind::ALL {
        let loop_thread = Arc::new(Python::attach(|py| LoopThread::start(py, kind))?);
        let inside = Arc::clone(&loop_thread);
        // `spawn_with` builds the awaitable on the loop's thread: blocking there would hang.
        let outcome = futures::executor::block_on(loop_thread.event_loop().spawn_with(move |py| {
            inside.block_on(&helpers(py)?.getattr("noop")?.call0()?)?;
            helpers(py)?.getattr("noop")?.call0()
        }));
        let err = outcome.expect_err("refused");
        Python::attach(|py| {
            assert!(err.is_instance_of::<PyRuntimeError>(py), "{kind}: {err}");
            assert!(err.to_string().contains("would wait for itself"), "{err}");
        });
    }
    Ok(())
}

#[test]
fn dropping_a_loop_thread_cancels_its_work_closes_the_loop_and_joins() -> PyResult<()> {
    common::initialize();
    for kind in LoopKind::ALL {
        let (started, cancelled, loop_threads) = Python::attach(|py| {
            PyResult::Ok((
                threading_event(py)?.unbind(),
                threading_event(py)?.unbind(),
                pyo3::types::PyList::empty(py).unbind(),
            ))
        })?;
        let loop_thread = Python::attach(|py| LoopThread::start(py, kind))?;
        let (started_in, cancelled_in, loop_threads_in) = Python::attach(|py| {
            (
                started.clone_ref(py),
                cancelled.clone_ref(py),
                loop_threads.clone_ref(py),
            )
        });
        let pending = loop_thread.event_loop().spawn_with(move |py| {
            // On the loop's thread: the test checks that this very thread ends.
            let current = py.import("threading")?.call_method0("current_thread")?;
            loop_threads_in.bind(py).append(current)?;
            helpers(py)?
                .getattr("wait_forever")?
                .call1((started_in, cancelled_in))
        });
        Python::attach(|py| started.bind(py).call_method0("wait").map(drop))?;
        drop(loop_thread);
        Python::attach(|py| {
            // Synchronously: the drop joined the thread, after the loop cancelled the task.
            assert!(
                cancelled.bind(py).call_method0("is_set")?.is_truthy()?,
                "{kind}"
            );
            let thread = loop_threads.bind(py).get_item(0)?;
            assert!(
                !thread.call_method0("is_alive")?.is_truthy()?,
                "{kind}: the loop's thread still runs"
            );
            PyResult::Ok(())
        })?;
        let outcome = futures::executor::block_on(pending);
        let err = outcome.expect_err("cancelled with its loop");
        Python::attach(|py| assert!(pyo3_async::is_cancellation(py, &err), "{kind}: {err}"));
    }
    Ok(())
}

/// The last handle of a `LoopThread`, dropped by work on its own loop, cannot join: the loop is
/// asked to end, and its thread ends by itself, with nothing reported as unraisable.
#[test]
fn a_loop_thread_dropped_on_its_own_loop_ends_its_thread() -> PyResult<()> {
    common::initialize();
    for kind in LoopKind::ALL {
        let loop_threads = Python::attach(|py| {
            helpers(py)?.call_method0("record_unraisable")?;
            PyResult::Ok(pyo3::types::PyList::empty(py).unbind())
        })?;
        let loop_threads_in = Python::attach(|py| loop_threads.clone_ref(py));
        let loop_thread = Python::attach(|py| LoopThread::start(py, kind))?;
        let event_loop = loop_thread.event_loop().clone();
        let done = event_loop.spawn_with(move |py| {
            let current = py.import("threading")?.call_method0("current_thread")?;
            loop_threads_in.bind(py).append(current)?;
            drop(loop_thread);
            helpers(py)?.getattr("noop")?.call0()
        });
        // The work that dropped it still completes, then the loop ends.
        let _ = futures::executor::block_on(done);
        Python::attach(|py| {
            let thread = loop_threads.bind(py).get_item(0)?;
            thread.call_method1("join", (30,))?;
            assert!(
                !thread.call_method0("is_alive")?.is_truthy()?,
                "{kind}: the loop's thread still runs"
            );
            let reported = helpers(py)?.call_method0("recorded_unraisable")?;
            assert_eq!(reported.len()?, 0, "{kind}: {reported}");
            PyResult::Ok(())
        })?;
    }
    Ok(())
}

/// The harness can fail: an error of the body fails each loop's test, with its traceback.
#[pyo3_async::test]
#[should_panic(expected = "KeyError: 'missing'")]
async fn a_failing_body_fails_the_test() -> PyResult<()> {
    Err(PyKeyError::new_err("missing"))
}

/// A body returning `()` runs too, on the loops it names.
#[pyo3_async::test(asyncio, trio)]
async fn unit_bodies_on_chosen_loops() {
    let backend = Python::attach(pyo3_async::Backend::current).expect("inside a task");
    assert!(matches!(
        backend,
        pyo3_async::Backend::Asyncio | pyo3_async::Backend::Trio
    ));
}

/// What a test body calls with `super::`: the body resolves names where it was written.
fn half_of_the_answer() -> u64 {
    21
}

mod test_bodies {
    use pyo3::prelude::*;

    /// A function of the test's own module named `body`: the expansion neither takes the
    /// name nor shadows it.
    fn body() -> u64 {
        21
    }

    #[pyo3_async::test(asyncio, trio)]
    async fn call_super_and_a_function_named_body() -> PyResult<()> {
        assert_eq!(super::half_of_the_answer() + body(), 42);
        Ok(())
    }

    /// A result under another name, told by its type.
    type Checked = Result<(), std::fmt::Error>;

    #[derive(Debug)]
    struct Reported;

    impl From<std::fmt::Error> for Reported {
        fn from(_: std::fmt::Error) -> Self {
            Reported
        }
    }

    impl From<Reported> for PyErr {
        fn from(_: Reported) -> Self {
            pyo3::exceptions::PyValueError::new_err("reported")
        }
    }

    #[pyo3_async::test(asyncio)]
    async fn an_aliased_result() -> Result<(), Reported> {
        let checked: Checked = Ok(());
        Ok(checked?)
    }
}

#[no_implicit_prelude]
mod without_prelude {
    #[::pyo3_async::test(asyncio, trio)]
    async fn runs() -> ::pyo3::PyResult<()> {
        ::core::result::Result::Ok(())
    }

    #[::pyo3_async::test(trio)]
    async fn unit() {}
}

/// A future run on a loop that exists but does not run: twice on the same loop, which stays
/// open; a closed loop is asyncio's own error.
#[test]
fn run_until_complete_on_a_loop_of_the_callers() -> PyResult<()> {
    common::initialize();
    Python::attach(|py| {
        let event_loop = py.import("asyncio")?.call_method0("new_event_loop")?;
        let first = pyo3_async::run_until_complete(&event_loop, async {
            let running = Python::attach(|py| {
                py.import("asyncio")?
                    .call_method0("get_running_loop")
                    .map(Bound::unbind)
            })?;
            PyResult::Ok(running)
        })?;
        assert!(first.bind(py).is(&event_loop), "the caller's loop ran it");
        assert_eq!(
            pyo3_async::run_until_complete(&event_loop, async { PyResult::Ok(2) })?,
            2
        );
        assert!(!event_loop.call_method0("is_closed")?.is_truthy()?);
        event_loop.call_method0("close")?;
        let closed = pyo3_async::run_until_complete(&event_loop, async { PyResult::Ok(3) });
        let err = closed.expect_err("a closed loop");
        assert!(err.is_instance_of::<PyRuntimeError>(py), "{err}");
        assert!(err.to_string().contains("closed"), "{err}");
        PyResult::Ok(())
    })
}

/// asyncio's options, on a trio run: refused by name, not ignored.
#[test]
fn loop_options_are_refused_for_trio() {
    common::initialize();
    Python::attach(|py| {
        let options = pyo3_async::LoopOptions::new().debug(true);
        let refused =
            pyo3_async::run_with(py, LoopKind::Trio, &options, async { PyResult::Ok(()) });
        let err = refused.expect_err("trio has no debug mode");
        assert!(
            err.is_instance_of::<pyo3::exceptions::PyValueError>(py),
            "{err}"
        );
        assert!(err.to_string().contains("asyncio's"), "{err}");
    });
}

/// `tokio` among the test's loops: its timers work in the body, on every loop.
#[cfg(feature = "tokio")]
#[pyo3_async::test(tokio)]
async fn tokio_timers_in_a_test_body() {
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    let spawned = tokio::spawn(async { 42 }).await.expect("a tokio task");
    assert_eq!(spawned, 42);
}

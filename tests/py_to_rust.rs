//! Python work awaited from Rust executors: an asyncio, uvloop or trio loop runs in a Python
//! thread, and tokio (multi-thread and current-thread) and smol drive `PyFuture` from their
//! own threads (`PyAsyncIter`: `py_async_iter.rs`).

mod common;

use futures::{FutureExt, StreamExt};
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3_async::{is_cancellation, LoopKind, PyAsyncIter, PyFuture};

use common::executors::{for_each_loop, run, spawn_waiting, wait_event, Loop};
use common::LOOPS;

#[test]
fn results_and_exception_types() -> PyResult<()> {
    for_each_loop(|event_loop, executor| {
        let future = event_loop.spawn("add", (2, 3))?;
        let value = run(executor, future)?;
        assert_eq!(Python::attach(|py| value.extract::<i32>(py))?, 5);

        let error = Python::attach(|py| PyKeyError::new_err("missing").into_value(py));
        let future = event_loop.spawn("fail", (error,))?;
        let err = run(executor, future).expect_err("the coroutine raised");
        Python::attach(|py| assert!(err.is_instance_of::<PyKeyError>(py)));
        Ok(())
    })
}

#[test]
fn spawn_with_builds_the_awaitable_later() -> PyResult<()> {
    for_each_loop(|event_loop, executor| {
        let module = Python::attach(|py| event_loop.module.clone_ref(py));
        let future = event_loop
            .event_loop
            .spawn_with(move |py| module.bind(py).getattr("add")?.call1((20, 22)));
        let value = run(executor, future.extract::<i32>())?;
        assert_eq!(value, 42);
        Ok(())
    })
}

#[test]
fn many_concurrent_awaits() -> PyResult<()> {
    for_each_loop(|event_loop, executor| {
        let futures = (0..300)
            .map(|i| event_loop.spawn("add", (i, 1)))
            .collect::<PyResult<Vec<_>>>()?;
        let values = run(executor, futures::future::try_join_all(futures))?;
        Python::attach(|py| {
            for (i, value) in values.iter().enumerate() {
                assert_eq!(value.extract::<usize>(py)?, i + 1);
            }
            Ok(())
        })
    })
}

#[test]
fn dropping_the_future_cancels_the_python_side() -> PyResult<()> {
    for_each_loop(|event_loop, executor| {
        let (future, cancelled) = spawn_waiting(event_loop)?;
        run(executor, async move { drop(future) });
        assert!(
            wait_event(&cancelled)?,
            "the Python side saw no cancellation"
        );
        Ok(())
    })
}

#[test]
fn detached_future_keeps_running() -> PyResult<()> {
    for_each_loop(|event_loop, executor| {
        let (future, cancelled) = spawn_waiting(event_loop)?;
        run(executor, async move { drop(future.detach()) });
        // Not cancelled: a round trip through the loop later, the flag is still clear.
        run(executor, event_loop.spawn("noop", ())?)?;
        let still_running =
            Python::attach(|py| cancelled.bind(py).call_method0("is_set")?.is_truthy())?;
        assert!(!still_running, "a detached future was cancelled");
        Ok(())
    })
}

#[test]
fn python_side_cancellation_is_recognisable() -> PyResult<()> {
    for_each_loop(|event_loop, executor| {
        if event_loop.kind == LoopKind::Trio {
            return Ok(()); // trio: see `finished_trio_run_resolves_pending_futures`
        }
        let future = Python::attach(|py| {
            let future = event_loop.new_future(py)?;
            let asyncio_loop = future.call_method0("get_loop")?;
            let awaited = PyFuture::from_future(&future)?;
            asyncio_loop.call_method1("call_soon_threadsafe", (future.getattr("cancel")?,))?;
            PyResult::Ok(awaited)
        })?;
        let err = run(executor, future).expect_err("the future was cancelled");
        Python::attach(|py| assert!(is_cancellation(py, &err)));
        Ok(())
    })
}

#[test]
fn futures_created_elsewhere() -> PyResult<()> {
    for_each_loop(|event_loop, executor| {
        // A concurrent.futures.Future completed by a Python thread.
        let future = Python::attach(|py| {
            let future = py
                .import("concurrent.futures")?
                .getattr("Future")?
                .call0()?;
            let awaited = PyFuture::from_future(&future)?;
            event_loop.make(py, "complete_from_thread", (&future, 5))?;
            PyResult::Ok(awaited)
        })?;
        let value = run(executor, future)?;
        assert_eq!(Python::attach(|py| value.extract::<i32>(py))?, 5);

        if event_loop.kind != LoopKind::Trio {
            // An asyncio future of the loop, completed on the loop thread.
            let future = Python::attach(|py| {
                let future = event_loop.new_future(py)?;
                let asyncio_loop = future.call_method0("get_loop")?;
                let awaited = PyFuture::from_future(&future)?;
                asyncio_loop
                    .call_method1("call_soon_threadsafe", (future.getattr("set_result")?, 7))?;
                PyResult::Ok(awaited)
            })?;
            let value = run(executor, future.extract::<i32>())?;
            assert_eq!(value, 7);
        }
        Ok(())
    })
}

#[test]
fn scheduled_coroutines_run_in_a_copy_of_the_creating_context() -> PyResult<()> {
    for_each_loop(|event_loop, executor| {
        let module = Python::attach(|py| event_loop.module.clone_ref(py));
        let event_loop_handle = event_loop.event_loop.clone();
        let value = run(executor, async move {
            let future = Python::attach(|py| {
                let module = module.bind(py);
                module.getattr("VAR")?.call_method1("set", ("from-rust",))?;
                event_loop_handle.spawn(&module.getattr("read_var")?.call0()?)
            })?;
            future.extract::<String>().await
        })?;
        assert_eq!(
            value, "from-rust",
            "on {} with {executor:?}",
            event_loop.kind
        );
        Ok(())
    })
}

#[test]
fn stopped_loops_resolve_pending_futures_and_refuse_new_ones() -> PyResult<()> {
    common::initialize();
    for kind in LOOPS {
        let mut event_loop = Python::attach(|py| Loop::start(py, kind))?;
        let (pending, _) = spawn_waiting(&event_loop)?;
        let stream = Python::attach(|py| {
            PyAsyncIter::new(
                &event_loop.event_loop,
                &event_loop.make(py, "counting", (event_loop.make(py, "Counter", ())?,))?,
            )
        })?;
        event_loop.stop()?;
        // Decided by now: the loop dropped the task (asyncio) or the run cancelled it (trio).
        let outcome = pending
            .now_or_never()
            .expect("resolved once the loop stopped");
        let err = outcome.expect_err("no result can come from a stopped loop");
        Python::attach(|py| {
            assert!(
                is_cancellation(py, &err)
                    || err.to_string().contains("ended without a result")
                    || err.to_string().contains("before the Python work finished"),
                "{kind}: {err}"
            )
        });
        // The stream ends with an error too, after any items already buffered.
        let items = futures::executor::block_on(stream.collect::<Vec<_>>());
        assert!(
            items.last().is_some_and(Result::is_err),
            "{kind}: the stream did not end with an error"
        );
        // New work is refused at once, however it is spawned.
        let refused = event_loop
            .event_loop
            .spawn_with(|py| py.import("asyncio")?.call_method1("sleep", (0,)))
            .now_or_never()
            .expect("refused at once");
        assert!(refused.is_err(), "{kind}: a stopped loop accepted work");
        let refused = Python::attach(|py| {
            event_loop
                .event_loop
                .spawn(&event_loop.make(py, "noop", ())?)
        });
        assert!(refused.is_err(), "{kind}: a stopped loop accepted work");
    }
    Ok(())
}

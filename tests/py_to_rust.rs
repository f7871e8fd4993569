//! Python work awaited from Rust executors: an asyncio, uvloop or trio loop runs in a Python
//! thread, and tokio (multi-thread and current-thread) and smol drive `PyFuture` and
//! `PyAsyncIter` from their own threads.

mod common;

use std::future::Future;
use std::sync::OnceLock;

use futures::{FutureExt, StreamExt};
use pyo3::call::PyCallArgs;
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::PyModule;
use pyo3_async::{is_cancellation, EventLoop, LoopKind, LoopThread, PyAsyncIter, PyFuture};

use common::{helpers, LOOPS};

#[derive(Clone, Copy, Debug)]
enum Executor {
    TokioMultiThread,
    TokioCurrentThread,
    Smol,
}

const EXECUTORS: [Executor; 3] = [
    Executor::TokioMultiThread,
    Executor::TokioCurrentThread,
    Executor::Smol,
];

/// Runs `future` to completion on `executor` (on a worker thread for tokio multi-thread).
fn run<F>(executor: Executor, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    static MULTI_THREAD: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    match executor {
        Executor::TokioMultiThread => {
            let runtime = MULTI_THREAD
                .get_or_init(|| tokio::runtime::Runtime::new().expect("a tokio runtime"));
            runtime
                .block_on(runtime.spawn(future))
                .expect("the task did not panic")
        }
        Executor::TokioCurrentThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(future),
        Executor::Smol => smol::block_on(future),
    }
}

/// A loop running in its own Python thread, and the tests' Python helpers.
struct Loop {
    kind: LoopKind,
    module: Py<PyModule>,
    /// Taken when stopped.
    thread: Option<LoopThread>,
    event_loop: EventLoop,
}

impl Loop {
    fn start(py: Python<'_>, kind: LoopKind) -> PyResult<Self> {
        let thread = LoopThread::start(py, kind)?;
        Ok(Loop {
            kind,
            module: helpers(py)?.unbind(),
            event_loop: thread.event_loop().clone(),
            thread: Some(thread),
        })
    }

    /// `helpers.<name>(*args)`: builds a coroutine, an object...
    fn make<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        args: impl PyCallArgs<'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.module.bind(py).getattr(name)?.call1(args)
    }

    fn spawn(&self, name: &str, args: impl for<'py> PyCallArgs<'py>) -> PyResult<PyFuture> {
        Python::attach(|py| self.event_loop.spawn(&self.make(py, name, args)?))
    }

    fn stop(&mut self) -> PyResult<()> {
        self.thread.take().map_or(Ok(()), LoopThread::stop)
    }

    /// A new future of the (asyncio) loop, made on its thread.
    fn new_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let thread = self.thread.as_ref().expect("the loop runs");
        let future = thread.block_on(&self.make(py, "new_future", ())?)?;
        Ok(future.into_bound(py))
    }
}

/// Runs `test` for every loop and executor, with the interpreter released.
fn for_each_loop(test: impl Fn(&Loop, Executor) -> PyResult<()> + Sync) -> PyResult<()> {
    for kind in LOOPS {
        let mut event_loop = Python::attach(|py| Loop::start(py, kind))?;
        for executor in EXECUTORS {
            Python::attach(|py| py.detach(|| test(&event_loop, executor)))
                .map_err(|err| annotate(err, kind, executor))?;
        }
        event_loop.stop()?;
    }
    Ok(())
}

fn annotate(err: PyErr, kind: LoopKind, executor: Executor) -> PyErr {
    Python::attach(|py| {
        pyo3::exceptions::PyAssertionError::new_err(format!(
            "on {kind} with {executor:?}: {}",
            err.value(py)
        ))
    })
}

/// Spawns a coroutine that waits forever, once it runs; returns it and the event it sets when
/// cancelled.
fn spawn_waiting(event_loop: &Loop) -> PyResult<(PyFuture, Py<PyAny>)> {
    let (started, cancelled) =
        Python::attach(|py| Ok::<_, PyErr>((threading_event(py)?, threading_event(py)?)))?;
    let future = Python::attach(|py| {
        event_loop.spawn(
            "wait_forever",
            (started.clone_ref(py), cancelled.clone_ref(py)),
        )
    })?;
    assert!(wait_event(&started)?);
    Ok((future, cancelled))
}

fn threading_event(py: Python<'_>) -> PyResult<Py<PyAny>> {
    Ok(py.import("threading")?.getattr("Event")?.call0()?.unbind())
}

fn wait_event(event: &Py<PyAny>) -> PyResult<bool> {
    Python::attach(|py| event.bind(py).call_method1("wait", (30,))?.is_truthy())
}

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
fn async_iterators_as_streams() -> PyResult<()> {
    for_each_loop(|event_loop, executor| {
        // Every item, in order, in batches.
        let stream = Python::attach(|py| {
            PyAsyncIter::with_capacity(
                &event_loop.event_loop,
                &event_loop.make(py, "numbers", (1000,))?,
                16,
            )
        })?;
        let items = run(executor, stream.collect::<Vec<_>>());
        let items = Python::attach(|py| {
            items
                .into_iter()
                .map(|item| item?.extract::<usize>(py))
                .collect::<PyResult<Vec<_>>>()
        })?;
        assert_eq!(items, (0..1000).collect::<Vec<_>>());

        // An exception is an item, then the stream ends.
        let stream = Python::attach(|py| {
            PyAsyncIter::new(
                &event_loop.event_loop,
                &event_loop.make(py, "failing_numbers", ())?,
            )
        })?;
        let items = run(executor, stream.collect::<Vec<_>>());
        assert_eq!(items.len(), 2);
        Python::attach(|py| {
            assert_eq!(
                items[0]
                    .as_ref()
                    .expect("first item")
                    .extract::<i32>(py)
                    .ok(),
                Some(1)
            );
            assert!(items[1]
                .as_ref()
                .expect_err("then the error")
                .is_instance_of::<PyKeyError>(py));
        });

        // Dropped early: the generator is closed on its loop.
        let closed = Python::attach(threading_event)?;
        let stream = Python::attach(|py| {
            PyAsyncIter::with_capacity(
                &event_loop.event_loop,
                &event_loop.make(py, "numbers", (1_000_000, closed.clone_ref(py)))?,
                4,
            )
        })?;
        let first = run(executor, async move {
            let mut stream = stream;
            stream.next().await
        });
        assert!(first.is_some());
        assert!(wait_event(&closed)?, "the generator was not closed");
        Ok(())
    })
}

#[test]
fn backpressure_bounds_what_the_pump_pulls() -> PyResult<()> {
    const CAPACITY: usize = 4;
    for_each_loop(|event_loop, executor| {
        let counter =
            Python::attach(|py| Ok::<_, PyErr>(event_loop.make(py, "Counter", ())?.unbind()))?;
        let mut stream = Python::attach(|py| {
            PyAsyncIter::with_capacity(
                &event_loop.event_loop,
                &event_loop.make(py, "counting", (counter.clone_ref(py),))?,
                CAPACITY,
            )
        })?;
        let (first, returned) = run(executor, async move {
            let first = stream.next().await;
            (first, stream)
        });
        assert!(first.is_some());
        // Give the pump several loop passes to run ahead if it could.
        for _ in 0..5 {
            run(executor, event_loop.spawn("noop", ())?)?;
        }
        let produced =
            Python::attach(|py| counter.bind(py).getattr("produced")?.extract::<usize>())?;
        assert!(
            (CAPACITY..=2 * CAPACITY + 1).contains(&produced),
            "{produced} items pulled with a buffer of {CAPACITY}"
        );
        drop(returned);
        Ok(())
    })
}

#[test]
fn stopped_loops_resolve_pending_futures_and_refuse_new_ones() -> PyResult<()> {
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

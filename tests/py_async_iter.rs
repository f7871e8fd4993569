//! Python async iterators consumed as Rust streams (`PyAsyncIter`) by tokio and smol, from
//! their own threads, on every loop.

mod common;

use futures::StreamExt;
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3_async::PyAsyncIter;

use common::executors::{for_each_loop, run, threading_event, wait_event};

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

//! Rust tasks as real HTTP clients: tokio tasks awaiting `httpx.AsyncClient` requests that
//! run on a Python loop, against uvicorn (asyncio, uvloop) or hypercorn (trio) serving on
//! 127.0.0.1 in that same loop (`common/web.py`).

mod common;

use std::time::Duration;

use pyo3::prelude::*;
use pyo3_async::{EventLoop, LoopThread, PyFuture};

use common::{web, LOOPS};

/// Requests at once: half answered, half parked by the server until their client goes.
const REQUESTS: usize = 1_000;
const FAST: usize = REQUESTS / 2;
/// The parked requests the server holds at once, before any is cancelled: the parked clients'
/// pools have this many connections.
const PARKED: usize = 100;
/// No step waits longer: a lost wake-up fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(60);

/// `site.<method>()`, scheduled on the site's loop and awaited from any thread.
fn call(event_loop: &EventLoop, site: &Py<PyAny>, method: &'static str) -> PyFuture {
    let site = Python::attach(|py| site.clone_ref(py));
    event_loop.spawn_with(move |py| site.bind(py).call_method0(method))
}

/// `site.get(path, i)`: request `i`, sent through httpx on the site's loop.
fn get(event_loop: &EventLoop, site: &Py<PyAny>, path: &'static str, i: usize) -> PyFuture {
    let site = Python::attach(|py| site.clone_ref(py));
    event_loop.spawn_with(move |py| site.bind(py).call_method1("get", (path, i)))
}

#[test]
fn a_thousand_tokio_tasks_await_httpx_requests_and_dropping_half_cancels_them() -> PyResult<()> {
    common::initialize();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for kind in LOOPS {
        let loop_thread = Python::attach(|py| LoopThread::start(py, kind))?;
        let event_loop = loop_thread.event_loop().clone();
        let site = Python::attach(|py| {
            let opening = web(py)?
                .getattr("open_site")?
                .call1((PARKED, REQUESTS - FAST))?;
            loop_thread.block_on(&opening)
        })?;
        let serving = Python::attach(|py| event_loop.spawn(&site.bind(py).call_method0("serve")?))?;

        runtime.block_on(async {
            tokio::time::timeout(LIMIT, async {
                let requests: Vec<_> = (0..REQUESTS)
                    .map(|i| {
                        let path = if i % 2 == 0 { "/fast" } else { "/park" };
                        let request = get(&event_loop, &site, path, i / 2);
                        (path, tokio::spawn(request))
                    })
                    .collect();
                let (fast, parked): (Vec<_>, Vec<_>) =
                    requests.into_iter().partition(|(path, _)| *path == "/fast");
                for (_, answered) in fast {
                    let status = answered.await.expect("the task ran")?;
                    let status = Python::attach(|py| status.extract::<u16>(py))?;
                    assert_eq!(status, 200, "{kind}");
                }
                call(&event_loop, &site, "wait_parked").await?;
                // Half-way: the other half of the tasks go, and their `PyFuture`s with them.
                for (_, pending) in &parked {
                    pending.abort();
                }
                for (_, pending) in parked {
                    assert!(pending.await.expect_err("aborted").is_cancelled());
                }
                // Every Python request is cancelled, the parked ones hang up on the server.
                call(&event_loop, &site, "wait_cancelled").await?;
                PyResult::Ok(())
            })
            .await
            .unwrap_or_else(|_| panic!("{kind}: stuck for {LIMIT:?}"))
        })?;

        Python::attach(|py| loop_thread.block_on(&site.bind(py).call_method0("stop")?))?;
        futures::executor::block_on(serving)?;
        Python::attach(|py| {
            let site = site.bind(py);
            // The pools hold `PARKED` requests, and may pass a connection that a cancelled
            // request frees to a queued one whose cancel is still on its way: the server can
            // park a few more, and must release every one of them.
            let parked = site.getattr("parked")?.extract::<usize>()?;
            assert!(parked >= PARKED, "{kind}: {parked} parked");
            let released = site.getattr("released")?.extract::<usize>()?;
            assert_eq!(released, parked, "{kind}");
            let cancelled = site.getattr("cancelled")?.extract::<usize>()?;
            assert_eq!(cancelled, REQUESTS - FAST, "{kind}");
            PyResult::Ok(())
        })?;
        loop_thread.stop()?;
    }
    Ok(())
}

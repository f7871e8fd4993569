//! Python loops in Python threads, and the Rust executors (tokio multi-thread and
//! current-thread, smol) that await their work: the set-up of `py_to_rust.rs` and
//! `py_async_iter.rs`.

use std::future::Future;
use std::sync::OnceLock;

use pyo3::call::PyCallArgs;
use pyo3::prelude::*;
use pyo3::types::PyModule;
use pyo3_async::{EventLoop, LoopKind, LoopThread, PyFuture};

use super::{helpers, LOOPS};

#[derive(Clone, Copy, Debug)]
pub enum Executor {
    TokioMultiThread,
    TokioCurrentThread,
    Smol,
}

pub const EXECUTORS: [Executor; 3] = [
    Executor::TokioMultiThread,
    Executor::TokioCurrentThread,
    Executor::Smol,
];

/// Runs `future` to completion on `executor` (on a worker thread for tokio multi-thread).
pub fn run<F>(executor: Executor, future: F) -> F::Output
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
pub struct Loop {
    pub kind: LoopKind,
    pub module: Py<PyModule>,
    /// Taken when stopped.
    pub thread: Option<LoopThread>,
    pub event_loop: EventLoop,
}

impl Loop {
    pub fn start(py: Python<'_>, kind: LoopKind) -> PyResult<Self> {
        let thread = LoopThread::start(py, kind)?;
        Ok(Loop {
            kind,
            module: helpers(py)?.unbind(),
            event_loop: thread.event_loop().clone(),
            thread: Some(thread),
        })
    }

    /// `helpers.<name>(*args)`: builds a coroutine, an object...
    pub fn make<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        args: impl PyCallArgs<'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.module.bind(py).getattr(name)?.call1(args)
    }

    pub fn spawn(&self, name: &str, args: impl for<'py> PyCallArgs<'py>) -> PyResult<PyFuture> {
        Python::attach(|py| self.event_loop.spawn(&self.make(py, name, args)?))
    }

    pub fn stop(&mut self) -> PyResult<()> {
        self.thread.take().map_or(Ok(()), LoopThread::stop)
    }

    /// A new future of the (asyncio) loop, made on its thread.
    pub fn new_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let thread = self.thread.as_ref().expect("the loop runs");
        let future = thread.block_on(&self.make(py, "new_future", ())?)?;
        Ok(future.into_bound(py))
    }
}

/// Runs `test` for every loop and executor, with the interpreter released.
pub fn for_each_loop(test: impl Fn(&Loop, Executor) -> PyResult<()> + Sync) -> PyResult<()> {
    super::initialize();
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

pub fn annotate(err: PyErr, kind: LoopKind, executor: Executor) -> PyErr {
    Python::attach(|py| {
        pyo3::exceptions::PyAssertionError::new_err(format!(
            "on {kind} with {executor:?}: {}",
            err.value(py)
        ))
    })
}

/// Spawns a coroutine that waits forever, once it runs; returns it and the event it sets when
/// cancelled.
pub fn spawn_waiting(event_loop: &Loop) -> PyResult<(PyFuture, Py<PyAny>)> {
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

pub fn threading_event(py: Python<'_>) -> PyResult<Py<PyAny>> {
    Ok(py.import("threading")?.getattr("Event")?.call0()?.unbind())
}

pub fn wait_event(event: &Py<PyAny>) -> PyResult<bool> {
    Python::attach(|py| event.bind(py).call_method1("wait", (30,))?.is_truthy())
}

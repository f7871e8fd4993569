//! An event loop on a Python thread of its own, for Rust programs and tests.

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;

use crate::embed::loop_kind::LoopKind;
use crate::embed::loop_options::LoopOptions;
use crate::exit_guard::attach_unless_exiting;
use crate::glue;
use crate::py_to_rust::EventLoop;

/// A Python event loop running on a thread of its own until it is stopped or dropped: how a
/// Rust program (a server, a test) gets a loop to send Python work to.
///
/// The loop runs as a Python program's loop does: its framework's entry point (`asyncio.run`,
/// `uvloop.run`, `trio.run`) runs a main task that waits for [`stop`](LoopThread::stop).
/// Stopping (or dropping) ends that task; the framework then cancels the work still running on
/// the loop (tasks, `PyFuture`s waiting on it fail with a cancellation), closes it, and the
/// thread is joined.
///
/// ```
/// use pyo3::prelude::*;
/// use pyo3_async::{LoopKind, LoopThread};
///
/// Python::initialize();
/// let loop_thread = Python::attach(|py| LoopThread::start(py, LoopKind::Asyncio))?;
/// // Any thread, attached or not, can send work to the loop and await it.
/// let future = loop_thread
///     .event_loop()
///     .spawn_with(|py| py.import("asyncio")?.getattr("sleep")?.call1((0.01, "done")));
/// let done = futures::executor::block_on(future)?;
/// Python::attach(|py| {
///     assert_eq!(done.extract::<String>(py)?, "done");
///     // A coroutine run to completion from synchronous code.
///     let asyncio = py.import("asyncio")?;
///     let value = loop_thread.block_on(&asyncio.getattr("sleep")?.call1((0, 7))?)?;
///     assert_eq!(value.extract::<i32>(py)?, 7);
///     loop_thread.stop()
/// })?;
/// # PyResult::Ok(())
/// ```
pub struct LoopThread {
    kind: LoopKind,
    event_loop: EventLoop,
    /// The Python side (`loops.py`); taken by `stop`.
    thread: Option<Py<PyAny>>,
}

impl LoopThread {
    /// Starts a `kind` loop in a new (daemon) Python thread; returns once it runs.
    pub fn start(py: Python<'_>, kind: LoopKind) -> PyResult<LoopThread> {
        LoopThread::start_with(py, kind, &LoopOptions::new())
    }

    /// [`start`](LoopThread::start), with the loop made as `options` say.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::{LoopKind, LoopOptions, LoopThread};
    ///
    /// Python::initialize();
    /// Python::attach(|py| {
    ///     let loop_thread =
    ///         LoopThread::start_with(py, LoopKind::Asyncio, &LoopOptions::new().debug(true))?;
    ///     let running = loop_thread.event_loop().as_any(py).clone();
    ///     assert!(running.call_method0("get_debug")?.extract::<bool>()?);
    ///     loop_thread.stop()
    /// })?;
    /// # PyResult::Ok(())
    /// ```
    pub fn start_with(
        py: Python<'_>,
        kind: LoopKind,
        options: &LoopOptions,
    ) -> PyResult<LoopThread> {
        let (debug, loop_factory) = options.arguments(py);
        let thread = glue::loop_thread(py)?.call1((kind.name(), debug, loop_factory))?;
        let handle = thread.getattr(intern!(py, "handle"))?;
        let event_loop = match kind {
            LoopKind::Trio => EventLoop::trio(&handle)?,
            LoopKind::Asyncio | LoopKind::Uvloop => EventLoop::asyncio(&handle)?,
        };
        Ok(LoopThread {
            kind,
            event_loop,
            thread: Some(thread.unbind()),
        })
    }

    /// The loop, to spawn work on it from any thread.
    pub fn event_loop(&self) -> &EventLoop {
        &self.event_loop
    }

    /// The kind of loop it runs.
    pub fn kind(&self) -> LoopKind {
        self.kind
    }

    /// Runs `awaitable` on the loop and waits for its result with the interpreter released:
    /// the equivalent of `asyncio.run_coroutine_threadsafe(awaitable, loop).result()`. Called
    /// on the loop's own thread, it would wait for itself: that is an error. Python's signal
    /// handlers run while it waits: Ctrl-C cancels the task and raises `KeyboardInterrupt`.
    pub fn block_on(&self, awaitable: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = awaitable.py();
        if self.on_own_thread(py)? {
            return Err(PyRuntimeError::new_err(
                "LoopThread::block_on on the loop's own thread would wait for itself",
            ));
        }
        let future = self.event_loop.spawn(awaitable)?;
        // Detached while it waits; Ctrl-C (any signal handler's exception) cancels the task
        // and is raised here.
        crate::embed::block_on::wait(py, future)?
    }

    /// Ends the loop: work still running is cancelled, the loop is closed, the thread joined.
    /// Returns the error the loop ended with, if any. Called from the loop's own thread it
    /// cannot wait for itself: the loop is asked to end all the same (it does once the
    /// calling work yields), and the result is a `RuntimeError` saying it did not wait.
    pub fn stop(mut self) -> PyResult<()> {
        Python::attach(|py| self.stop_now(py))
    }

    fn stop_now(&mut self, py: Python<'_>) -> PyResult<()> {
        match self.thread.take() {
            Some(thread) => thread.bind(py).call_method0(intern!(py, "stop")).map(drop),
            None => Ok(()),
        }
    }

    fn on_own_thread(&self, py: Python<'_>) -> PyResult<bool> {
        match &self.thread {
            Some(thread) => thread
                .bind(py)
                .call_method0(intern!(py, "on_own_thread"))?
                .is_truthy(),
            None => Ok(false),
        }
    }
}

impl Drop for LoopThread {
    /// Stops the loop as [`stop`](LoopThread::stop) does; an error is reported as unraisable.
    /// Dropped by work running on its own loop (the last handle moved into a job, say), it
    /// cannot wait: the loop is asked to end, and its thread ends by itself once that work
    /// yields. Skipped while the interpreter exits (its threads are stopped with it).
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        attach_unless_exiting(|py| {
            let thread = thread.bind(py);
            let stopped = thread
                .call_method0(intern!(py, "on_own_thread"))
                .and_then(|own| own.is_truthy())
                .and_then(|own| {
                    let how = if own {
                        intern!(py, "request_stop")
                    } else {
                        intern!(py, "stop")
                    };
                    thread.call_method0(how).map(drop)
                });
            if let Err(err) = stopped {
                err.write_unraisable(py, None);
            }
        });
    }
}

impl std::fmt::Debug for LoopThread {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LoopThread")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

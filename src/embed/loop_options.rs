//! How a loop started from Rust is made: asyncio's debug mode and loop factory.

use pyo3::prelude::*;

/// How [`run_with`](crate::run_with) and [`LoopThread::start_with`](crate::LoopThread::start_with)
/// make their loop: the options of `asyncio.run` (on every Python ≥ 3.10, also where
/// `asyncio.run` lacks them). A trio run has neither: giving one for trio is a `ValueError`.
///
/// ```
/// use pyo3::prelude::*;
/// use pyo3_async::{LoopKind, LoopOptions};
///
/// Python::initialize();
/// let slow = Python::attach(|py| {
///     let options = LoopOptions::new().debug(true);
///     pyo3_async::run_with(py, LoopKind::Asyncio, &options, async {
///         // asyncio's debug mode: slow callbacks are logged, unawaited coroutines traced.
///         Python::attach(|py| {
///             let running = py.import("asyncio")?.call_method0("get_running_loop")?;
///             running.call_method0("get_debug")?.extract::<bool>()
///         })
///     })
/// })?;
/// assert!(slow);
/// # PyResult::Ok(())
/// ```
#[derive(Debug, Default)]
pub struct LoopOptions {
    pub(crate) debug: Option<bool>,
    pub(crate) loop_factory: Option<Py<PyAny>>,
}

impl LoopOptions {
    /// The framework's defaults (asyncio's debug mode as `PYTHONASYNCIODEBUG` says).
    pub fn new() -> Self {
        LoopOptions::default()
    }

    /// asyncio's debug mode, on or off.
    pub fn debug(mut self, on: bool) -> Self {
        self.debug = Some(on);
        self
    }

    /// The callable that makes the asyncio loop (`uvloop.new_event_loop`, a loop class of
    /// yours), instead of asyncio's (or uvloop's) own.
    pub fn loop_factory(mut self, factory: Py<PyAny>) -> Self {
        self.loop_factory = Some(factory);
        self
    }

    /// `(debug, loop_factory)`, as `loops.py` takes them.
    pub(crate) fn arguments<'py>(
        &self,
        py: Python<'py>,
    ) -> (Option<bool>, Option<Bound<'py, PyAny>>) {
        (
            self.debug,
            self.loop_factory
                .as_ref()
                .map(|factory| factory.bind(py).clone()),
        )
    }
}

//! Starting Python awaitables on an event loop from any thread.

use std::ffi::CString;
use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

use crate::backend::asyncio::running_loop;
use crate::backend::trio;
use crate::event_loop::{EventLoop, Inner};
use crate::py_to_rust::completion::Completion;
use crate::py_to_rust::task_slot::TaskSlot;
use crate::py_to_rust::PyFuture;

/// `EventLoop::spawn`.
pub(crate) fn spawn(event_loop: &EventLoop, awaitable: &Bound<'_, PyAny>) -> PyResult<PyFuture> {
    let py = awaitable.py();
    check_awaitable(awaitable)?;
    let (completion, receiver) = Completion::channel(py)?;
    let slot = Arc::new(TaskSlot::default());
    start(event_loop, awaitable, completion.bind(py), &slot)?;
    Ok(PyFuture::waiting(receiver, slot))
}

/// Runs `awaitable` on `event_loop` as an asyncio task or a trio system task, in a copy of
/// the current `contextvars` context, reporting to `completion`; `slot` receives the task.
pub(crate) fn start(
    event_loop: &EventLoop,
    awaitable: &Bound<'_, PyAny>,
    completion: &Bound<'_, Completion>,
    slot: &Arc<TaskSlot>,
) -> PyResult<()> {
    let py = awaitable.py();
    static COPY_CONTEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let context = COPY_CONTEXT
        .import(py, "contextvars", "copy_context")?
        .call0()?;
    let started = match event_loop.inner() {
        Inner::Asyncio(event_loop) => {
            let event_loop = event_loop.bind(py);
            let start = helper(py, "start_asyncio_task")?;
            let slot = slot.handle(py)?;
            if running_loop(py)?.is(event_loop) {
                start
                    .call1((event_loop, awaitable, context, completion, slot))
                    .map(drop)
            } else {
                // `RuntimeError('Event loop is closed')` when it is.
                event_loop
                    .call_method1(
                        intern!(py, "call_soon_threadsafe"),
                        (start, event_loop, awaitable, context, completion, slot),
                    )
                    .map(drop)
            }
        }
        Inner::Trio(token) => {
            static CANCEL_SCOPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            let token = token.bind(py);
            let scope = CANCEL_SCOPE.import(py, "trio", "CancelScope")?.call0()?;
            slot.attach_trio(py, token, &scope);
            let spawn = helper(py, "spawn_trio_system_task")?;
            let on_this_run = trio::current_token(py).is_ok_and(|current| current.is(token));
            if on_this_run {
                spawn
                    .call1((awaitable, completion, scope, context))
                    .map(drop)
            } else {
                // `trio.RunFinishedError` when the run is over.
                token
                    .call_method1(
                        intern!(py, "run_sync_soon"),
                        (spawn, awaitable, completion, scope, context),
                    )
                    .map(drop)
            }
        }
    };
    if started.is_err() {
        close_unstarted(awaitable);
    }
    started
}

/// Raises `TypeError` for objects `await` would refuse.
pub(crate) fn check_awaitable(awaitable: &Bound<'_, PyAny>) -> PyResult<()> {
    static IS_AWAITABLE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let py = awaitable.py();
    if IS_AWAITABLE
        .import(py, "inspect", "isawaitable")?
        .call1((awaitable,))?
        .is_truthy()?
    {
        return Ok(());
    }
    Err(PyTypeError::new_err(format!(
        "object {} can't be used in 'await' expression",
        awaitable.get_type().name()?
    )))
}

/// Closes a coroutine that will never run, so Python does not warn it was never awaited.
pub(crate) fn close_unstarted(awaitable: &Bound<'_, PyAny>) {
    let _ = helper(awaitable.py(), "close_unstarted").and_then(|close| close.call1((awaitable,)));
}

/// A function of the Python glue module (`helpers.py`).
pub(crate) fn helper<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    static HELPERS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let helpers = HELPERS.get_or_try_init(py, || {
        let code = CString::new(include_str!("helpers.py"))?;
        PyResult::Ok(
            PyModule::from_code(py, &code, c"pyo3_async/helpers.py", c"pyo3_async._helpers")?
                .unbind(),
        )
    })?;
    helpers.bind(py).getattr(name)
}

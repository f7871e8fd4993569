//! How a dropped `PyFuture` cancels the Python work it was waiting for.

use std::sync::{Arc, Mutex, PoisonError};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyWeakrefMethods, PyWeakrefReference};

use crate::backend::asyncio::running_loop;

/// The Python side of a [`PyFuture`](crate::PyFuture), once known: Rust cancels it through
/// this slot, from any thread; glue code on the loop thread attaches the task once it exists.
/// A plain Rust object, so that a `PyFuture` can exist before its task does, on a thread that
/// never attaches to the interpreter.
#[derive(Default)]
pub(crate) struct TaskSlot {
    state: Mutex<State>,
}

/// The slot as glue code in Python sees it.
#[pyclass(frozen)]
pub(crate) struct TaskSlotHandle {
    slot: Arc<TaskSlot>,
}

#[derive(Default)]
struct State {
    cancel_requested: bool,
    target: Option<Target>,
}

enum Target {
    /// A task or future of an asyncio loop, held weakly: a task that its loop dropped (the
    /// loop closed) must be collectable, so that its done-callback is dropped too and the
    /// Rust side learns that no result will come.
    Asyncio {
        event_loop: Py<PyAny>,
        future: Py<PyWeakrefReference>,
    },
    /// A `concurrent.futures.Future` (thread-safe).
    Concurrent(Py<PyAny>),
    /// The cancel scope around a trio system task.
    Trio { token: Py<PyAny>, scope: Py<PyAny> },
}

impl TaskSlot {
    pub(crate) fn handle(self: &Arc<Self>, py: Python<'_>) -> PyResult<Py<TaskSlotHandle>> {
        Py::new(
            py,
            TaskSlotHandle {
                slot: Arc::clone(self),
            },
        )
    }

    pub(crate) fn attach_concurrent(&self, py: Python<'_>, future: &Bound<'_, PyAny>) {
        self.attach(py, Target::Concurrent(future.clone().unbind()));
    }

    pub(crate) fn attach_trio(
        &self,
        py: Python<'_>,
        token: &Bound<'_, PyAny>,
        scope: &Bound<'_, PyAny>,
    ) {
        self.attach(
            py,
            Target::Trio {
                token: token.clone().unbind(),
                scope: scope.clone().unbind(),
            },
        );
    }

    /// Records the Python side; cancels it at once if Rust already asked for that.
    fn attach(&self, py: Python<'_>, target: Target) {
        let target = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if !state.cancel_requested {
                state.target = Some(target);
                return;
            }
            target
        };
        let _ = target.cancel(py);
    }

    /// Cancels the Python side, now or as soon as it is attached. Any thread; a no-op once
    /// the interpreter is shutting down.
    pub(crate) fn cancel(&self) {
        crate::exit_guard::attach_unless_exiting(|py| {
            // Interpreter first, then the lock, as in `attach`.
            let target = {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.cancel_requested = true;
                state.target.take()
            };
            if let Some(target) = target {
                // A closed loop or a finished run has nothing left to cancel.
                let _ = target.cancel(py);
            }
        });
    }
}

impl Target {
    fn cancel(self, py: Python<'_>) -> PyResult<()> {
        match self {
            Target::Asyncio { event_loop, future } => {
                let Some(future) = future.bind(py).upgrade() else {
                    return Ok(());
                };
                let cancel = future.getattr(intern!(py, "cancel"))?;
                if running_loop(py)?.is(&event_loop) {
                    cancel.call0()?;
                } else {
                    event_loop
                        .bind(py)
                        .call_method1(intern!(py, "call_soon_threadsafe"), (cancel,))?;
                }
            }
            Target::Concurrent(future) => {
                future.bind(py).call_method0(intern!(py, "cancel"))?;
            }
            Target::Trio { token, scope } => {
                let cancel = scope.bind(py).getattr(intern!(py, "cancel"))?;
                token
                    .bind(py)
                    .call_method1(intern!(py, "run_sync_soon"), (cancel,))?;
            }
        }
        Ok(())
    }
}

#[pymethods]
impl TaskSlotHandle {
    #[getter]
    fn cancel_requested(&self) -> bool {
        self.slot
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cancel_requested
    }

    /// Attaches an asyncio task or future, on its loop's thread; cancels it at once if Rust
    /// already asked for that.
    fn attach_asyncio(
        &self,
        py: Python<'_>,
        event_loop: &Bound<'_, PyAny>,
        future: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let target = Target::Asyncio {
            event_loop: event_loop.clone().unbind(),
            future: PyWeakrefReference::new(future)?.unbind(),
        };
        self.slot.attach(py, target);
        Ok(())
    }
}

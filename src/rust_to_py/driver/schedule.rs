//! Awaitables a poll requested that cannot be delegated (more than one, or a delegate already
//! runs): each starts as a task of the coroutine's loop, in a copy of the task's context, and
//! wakes the coroutine when it ends.

use std::sync::Arc;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::delegation::Request;
use crate::glue;
use crate::rust_to_py::driver::{Driver, Owner};
use crate::task::{Completion, Launch};

impl Driver {
    /// Starts awaitables that cannot be delegated as tasks of this coroutine's loop, in a copy
    /// of the task's context; each wakes the coroutine when it ends.
    pub(super) fn schedule(&mut self, py: Python<'_>, owner: &Owner, requests: Vec<Request>) {
        let finished = self.future.is_empty();
        let waker = Arc::clone(owner).into_waker();
        let target = if finished {
            // The future finished (a `select` picked another branch): nobody waits for these.
            Err(PyRuntimeError::new_err("the coroutine finished"))
        } else {
            self.parker(py, owner)
                .map(|parker| (parker.backend(), Arc::clone(parker.home())))
        };
        for request in requests {
            let awaitable = request.awaitable.bind(py);
            let then_wake = (!request.foreign).then(|| waker.clone());
            let launch = match &target {
                Ok((backend, home)) => {
                    Completion::new(py, request.sender, then_wake).and_then(|completion| {
                        Ok((
                            *backend,
                            Launch {
                                home: Arc::clone(home),
                                awaitable: awaitable.clone(),
                                context: glue::copy_context(py)?.call0()?,
                                completion: completion.into_bound(py),
                                slot: request.slot,
                            },
                        ))
                    })
                }
                Err(err) => {
                    let _ = request.sender.send(Err(err.clone_ref(py)));
                    Err(err.clone_ref(py))
                }
            };
            // This coroutine's poll: a step of a task of the loop. A launch that fails has
            // closed the awaitable and resolved the `PyFuture` with the error.
            match launch {
                Ok((backend, launch)) => drop(launch.start(backend)),
                Err(_) => {
                    let _ = glue::close_unstarted(py).and_then(|close| close.call1((awaitable,)));
                }
            }
        }
    }
}

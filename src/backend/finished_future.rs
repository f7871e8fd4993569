//! Stand-ins for a finished [`WakeupFuture`](super::wakeup_future::WakeupFuture): a resolved
//! and a cancelled `asyncio.Future` that a C asyncio task's wake-up reads instead.
//!
//! Why: a C `Task` wakes through its `task_wakeup(future)`, which reads an `asyncio.Future` in
//! C, but any other future through `future.result()`, looked up by a name that it makes from a
//! C string at every wake-up (CPython 3.10 to 3.14): a new string, hashed and looked up, then a
//! method call, and for a cancellation an exception raised by that method. That is some 2,000
//! instructions per wake-up, as much as the rest of our part of a cancellation. The wake-up
//! reads nothing of the future but its outcome, so it is handed a finished `asyncio.Future`
//! with the same outcome, and takes the C path.
//!
//! | the future's outcome | what a C task's wake-up is handed | what it makes of it |
//! |---|---|---|
//! | resolved | the resolved stand-in (its result is `None`) | steps the task with nothing |
//! | cancelled without a message | the cancelled stand-in | throws a new `CancelledError()` |
//! | cancelled with a message | the future itself | throws `CancelledError(message)` |
//!
//! Invariants: only the C task's own wake-up is handed a stand-in (any other callback gets the
//! future itself, as `asyncio.Future` hands itself to its callbacks); nothing else ever sees a
//! stand-in, so nothing can add a callback to one or change its outcome. Their loop is a
//! stand-in too (they never schedule anything), so no loop is kept alive by them; and the
//! wake-up never looks at a future's loop.

use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;

use crate::glue;
use crate::lazy::Lazy;

/// How a [`WakeupFuture`](super::wakeup_future::WakeupFuture) finished, where a stand-in
/// exists for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Resolved,
    /// Cancelled without a message.
    Cancelled,
}

/// What `callback` is handed in place of a future that finished with `outcome`: a stand-in
/// when `callback` is a C task's wake-up and the stand-ins exist (`_asyncio` imports), `None`
/// otherwise (the future itself, then).
pub(super) fn stand_in<'py>(
    callback: &Bound<'py, PyAny>,
    outcome: Outcome,
) -> Option<Bound<'py, PyAny>> {
    if !is_task_wakeup(callback) {
        return None;
    }
    let py = callback.py();
    static STAND_INS: Lazy<Option<(Py<PyAny>, Py<PyAny>)>> = Lazy::new();
    let (resolved, cancelled) = STAND_INS
        .get_or_init(py, || {
            glue::finished_futures(py)
                .and_then(|make| make.call0())
                .and_then(|made| made.extract())
                .ok()
        })
        .as_ref()?;
    Some(match outcome {
        Outcome::Resolved => resolved.bind(py).clone(),
        Outcome::Cancelled => cancelled.bind(py).clone(),
    })
}

/// The C function behind a C task's wake-up, learned from the first one met (0: not yet). The
/// same in every task and interpreter: it is `_asyncio`'s `task_wakeup`.
static TASK_WAKEUP: AtomicUsize = AtomicUsize::new(0);

/// Whether `callback` is the wake-up a C asyncio task adds to the future it waits on: a
/// built-in method whose C function is `task_wakeup` (the same from 3.10 to 3.14). Once that
/// function is known, two loads and a compare; until then, a built-in method is asked its name
/// and owner in Python (at most until the first task wakes).
fn is_task_wakeup(callback: &Bound<'_, PyAny>) -> bool {
    // SAFETY: attached (`callback` is bound); any object may be checked.
    if unsafe { ffi::PyCFunction_CheckExact(callback.as_ptr()) } == 0 {
        return false;
    }
    // SAFETY: attached, and `callback` is a built-in function.
    let function = unsafe { ffi::PyCFunction_GetFunction(callback.as_ptr()) }
        .map_or(0, |function| function as usize);
    let known = TASK_WAKEUP.load(Ordering::Relaxed);
    if known != 0 {
        return function == known;
    }
    let is_wakeup = glue::is_task_wakeup(callback.py())
        .and_then(|check| check.call1((callback,)))
        .and_then(|answer| answer.is_truthy())
        .unwrap_or(false);
    if is_wakeup && function != 0 {
        TASK_WAKEUP.store(function, Ordering::Relaxed);
    }
    is_wakeup
}

#[cfg(test)]
mod tests {
    use pyo3::types::PyDict;

    use super::*;

    /// On the Python the tests run on: a C task's wake-up is recognised (a CPython that renamed
    /// or reshaped it would silently lose the fast path), and none of the other callables a
    /// future may be handed is: a bound method of the same task, a Python function, a class.
    #[test]
    fn a_c_tasks_wake_up_is_recognised_and_nothing_else_is() {
        Python::attach(|py| {
            let scope = PyDict::new(py);
            py.run(
                cr#"
import asyncio

class Duck:
    """A future that keeps the callbacks a task gives it."""
    _asyncio_future_blocking = False
    def __init__(self): self.callbacks = []
    def get_loop(self): return asyncio.get_running_loop()
    def add_done_callback(self, callback, *, context=None): self.callbacks.append(callback)
    def __await__(self):
        self._asyncio_future_blocking = True
        yield self

async def main():
    duck = Duck()
    async def wait(): await duck
    task = asyncio.get_running_loop().create_task(wait())
    await asyncio.sleep(0)
    wakeup = duck.callbacks[0]
    # Let the task end: its wake-up, handed a finished future.
    finished = asyncio.get_running_loop().create_future()
    finished.set_result(None)
    asyncio.get_running_loop().call_soon(wakeup, finished)
    await task
    return wakeup, task.cancel, (lambda future: None), asyncio.Future

wakeup, bound, function, cls = asyncio.run(main())
"#,
                Some(&scope),
                None,
            )
            .expect("the probe runs");
            let get = |name: &str| scope.get_item(name).unwrap().unwrap();
            let (wakeup, bound, function, cls) =
                (get("wakeup"), get("bound"), get("function"), get("cls"));
            for other in [&bound, &function, &cls] {
                assert!(!is_task_wakeup(other), "{other:?}");
                assert!(stand_in(other, Outcome::Resolved).is_none());
            }
            assert!(is_task_wakeup(&wakeup));
            assert!(is_task_wakeup(&wakeup), "known now: by its C function");
            assert!(!is_task_wakeup(&bound), "still not, once known");

            let resolved = stand_in(&wakeup, Outcome::Resolved).unwrap();
            let cancelled = stand_in(&wakeup, Outcome::Cancelled).unwrap();
            let future_type = py.import("_asyncio").unwrap().getattr("Future").unwrap();
            for stand_in in [&resolved, &cancelled] {
                assert!(stand_in.get_type().is(&future_type), "exactly the C future");
                assert!(stand_in.call_method0("done").unwrap().is_truthy().unwrap());
            }
            assert!(resolved.call_method0("result").unwrap().is_none());
            assert!(cancelled
                .call_method0("cancelled")
                .unwrap()
                .is_truthy()
                .unwrap());
            let err = cancelled.call_method0("result").unwrap_err();
            assert!(err.get_type(py).name().unwrap() == "CancelledError");
            assert!(err.value(py).getattr("args").unwrap().len().unwrap() == 0);
        });
    }
}

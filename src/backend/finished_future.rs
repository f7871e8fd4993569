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
//! future itself, as `asyncio.Future` hands itself to its callbacks). The stand-ins are the
//! loop's own futures (one pair per loop, kept by its [home](crate::home)): a loop that looks
//! at what its `call_soon` is handed sees a finished future of its own, with the outcome the
//! task is about to read. Its code could change one (re-initialise it, set its
//! `_cancel_message`): each stand-in is checked before it is handed out (a few attribute reads
//! in C), and a changed one is never handed out again.

use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::glue;
use crate::home::Home;

/// How a [`WakeupFuture`](super::wakeup_future::WakeupFuture) finished, where a stand-in
/// exists for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Resolved,
    /// Cancelled without a message.
    Cancelled,
}

/// What `callback` is handed in place of a future of `home`'s loop that finished with
/// `outcome`: a stand-in when `callback` is a C task's wake-up and the loop has C futures,
/// `None` otherwise (the future itself, then).
///
/// An error (an interrupt while the first wake-up of the process, or of the loop, runs the
/// Python helpers) is the caller's to raise once the callback is scheduled with the future
/// itself; nothing is remembered of it, so the next wake-up asks again.
pub(super) fn stand_in<'py>(
    home: &Home,
    callback: &Bound<'py, PyAny>,
    outcome: Outcome,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    if !is_task_wakeup(callback)? {
        return Ok(None);
    }
    let py = callback.py();
    let stand_ins = match home.stand_ins().get() {
        Some(stand_ins) => stand_ins,
        None => {
            // Made outside the cell (it runs Python code); the first stored wins.
            let made = glue::finished_futures(py)?.call1((home.event_loop(),))?;
            let made = if made.is_none() {
                None
            } else {
                Some(made.extract::<(Py<PyAny>, Py<PyAny>)>()?)
            };
            home.stand_ins().get_or_init(|| made)
        }
    };
    let Some((resolved, cancelled)) = stand_ins else {
        return Ok(None);
    };
    let stand_in = match outcome {
        Outcome::Resolved => resolved.bind(py),
        Outcome::Cancelled => cancelled.bind(py),
    };
    Ok(intact(stand_in, outcome).then(|| stand_in.clone()))
}

/// Whether `stand_in` still reads as `outcome`, as made: the loop's code can reach it (its
/// `call_soon` is handed it) and change it (re-initialise it, set its `_cancel_message`); a
/// changed one is never handed out again, so the loop's wake-ups read their own futures.
///
/// Read through the C future's own attributes, where no Python code runs (so no interrupt is
/// lost); one that fails to read (re-initialised half-way) is not intact.
fn intact(stand_in: &Bound<'_, PyAny>, outcome: Outcome) -> bool {
    let py = stand_in.py();
    let is_none =
        |name: &Bound<'_, PyString>| stand_in.getattr(name).is_ok_and(|value| value.is_none());
    let state_is = |expected: &Bound<'_, PyString>| {
        stand_in
            .getattr(intern!(py, "_state"))
            // The future's state names are interned, as `intern!`'s: identity, usually.
            .and_then(|state| Ok(state.is(expected) || state.eq(expected)?))
            .unwrap_or(false)
    };
    match outcome {
        Outcome::Resolved => {
            state_is(intern!(py, "FINISHED"))
                && is_none(intern!(py, "_result"))
                && is_none(intern!(py, "_exception"))
        }
        Outcome::Cancelled => {
            state_is(intern!(py, "CANCELLED")) && is_none(intern!(py, "_cancel_message"))
        }
    }
}

/// The C function behind a C task's wake-up, learned from the first one met (0: not yet). The
/// same in every task and interpreter: it is `_asyncio`'s `task_wakeup`.
static TASK_WAKEUP: AtomicUsize = AtomicUsize::new(0);

/// Whether `callback` is the wake-up a C asyncio task adds to the future it waits on: a
/// built-in method whose C function is `task_wakeup` (the same from 3.10 to 3.14). Once that
/// function is known, two loads and a compare; until then, a built-in method is asked its name
/// and owner in Python (at most until the first task wakes).
fn is_task_wakeup(callback: &Bound<'_, PyAny>) -> PyResult<bool> {
    // SAFETY: attached (`callback` is bound); any object may be checked.
    if unsafe { ffi::PyCFunction_CheckExact(callback.as_ptr()) } == 0 {
        return Ok(false);
    }
    // SAFETY: attached, and `callback` is a built-in function.
    let function = unsafe { ffi::PyCFunction_GetFunction(callback.as_ptr()) }
        .map_or(0, |function| function as usize);
    let known = TASK_WAKEUP.load(Ordering::Relaxed);
    if known != 0 {
        return Ok(function == known);
    }
    let is_wakeup = glue::is_task_wakeup(callback.py())?
        .call1((callback,))?
        .is_truthy()?;
    if is_wakeup && function != 0 {
        TASK_WAKEUP.store(function, Ordering::Relaxed);
    }
    Ok(is_wakeup)
}

#[cfg(test)]
mod tests {
    use pyo3::types::PyDict;

    use super::*;

    /// On the Python the tests run on: a C task's wake-up is recognised (a CPython that renamed
    /// or reshaped it would silently lose the fast path), and none of the other callables a
    /// future may be handed is: a bound method of the same task, a Python function, a class;
    /// a loop's stand-ins are finished C futures of that loop.
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
                assert!(!is_task_wakeup(other).unwrap(), "{other:?}");
            }
            assert!(is_task_wakeup(&wakeup).unwrap());
            assert!(
                is_task_wakeup(&wakeup).unwrap(),
                "known now: by its C function"
            );
            assert!(!is_task_wakeup(&bound).unwrap(), "still not, once known");

            // The stand-ins of a loop: finished C futures of that loop.
            let event_loop = py
                .import("asyncio")
                .unwrap()
                .call_method0("new_event_loop")
                .unwrap();
            let (resolved, cancelled): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
                glue::finished_futures(py)
                    .unwrap()
                    .call1((&event_loop,))
                    .unwrap()
                    .extract()
                    .unwrap();
            let future_type = py.import("_asyncio").unwrap().getattr("Future").unwrap();
            for stand_in in [&resolved, &cancelled] {
                assert!(stand_in.get_type().is(&future_type), "exactly the C future");
                assert!(stand_in.call_method0("done").unwrap().is_truthy().unwrap());
                assert!(stand_in.call_method0("get_loop").unwrap().is(&event_loop));
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
            event_loop.call_method0("close").unwrap();
        });
    }
}

//! [`WakeupFuture`]: what an asyncio task waits on while an exported awaitable is parked. It
//! speaks asyncio's future protocol (the duck-typed one that `asyncio.isfuture` accepts and
//! `Task` drives) and is resolved by the awaitable's wake-up, never by Python code.
//!
//! Why not a real `asyncio.Future`: the task needs nothing but the protocol, and a loop future
//! carries a result, an exception, a traceback, a dict and a weak-reference list that a
//! wake-up never uses. This one is 80 bytes, the loop's 144: on a server holding 100,000
//! parked requests, that is 6 MB.
//!
//! | state | what it holds | entered by | left by |
//! |---|---|---|---|
//! | **pending** | `blocking`, the done-callbacks (the task's wake-up, in practice the only one) | [`WakeupFuture::new`] | `resolve` (the wake-up) or `cancel` |
//! | **resolved** | nothing | [`WakeupFuture::resolve`] | never |
//! | **cancelled** | the message of `cancel(msg)`, for the `CancelledError` of `result()` | `cancel` | never |
//!
//! Invariants: callbacks are scheduled with the loop's `call_soon` once, when the future
//! leaves **pending**, or at once when added to a finished future, as `asyncio.Future` does;
//! no Python code runs while the state is borrowed (callbacks and messages are moved out,
//! then called or dropped).
//!
//! anyio: its cancel scopes look at `task._fut_waiter` and hold back a cancellation only while
//! that is a *done* `asyncio.Future`; this one never passes that test, so anyio cancels the
//! task, which is what it does for any waiter that is not done.

use std::sync::Arc;

use pyo3::exceptions::asyncio::{CancelledError, InvalidStateError};
use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::intern;
use pyo3::prelude::*;
#[cfg(not(any(Py_3_12, not(any(Py_LIMITED_API, PyPy)))))]
use pyo3::types::PyDict;
use pyo3::{PyTraverseError, PyVisit};

use crate::gil_cell::{GilCell, GilGuard};
use crate::glue;
use crate::home::Home;
#[cfg(not(any(Py_LIMITED_API, Py_GIL_DISABLED, PyPy)))]
use crate::install_once::InstallOnce;
use crate::visit::{Traverse, Visit};

/// The future an asyncio task waits on while an exported awaitable is parked (see the
/// [module](self)).
#[pyclass(frozen, module = "pyo3_async")]
pub(crate) struct WakeupFuture {
    /// The home of the task's loop: `get_loop()`, and the way a wake-up from another thread
    /// reaches the loop.
    home: Arc<Home>,
    state: GilCell<State>,
}

enum State {
    Pending {
        /// `_asyncio_future_blocking`: true when yielded, set false by the task that takes it.
        blocking: bool,
        first: Option<Callback>,
        /// Callbacks past the first: only Python code that picks up `task._fut_waiter` adds
        /// them, so they cost a word until then (a `Vec` would cost three).
        #[allow(clippy::box_collection)]
        more: Option<Box<Vec<Callback>>>,
    },
    Resolved,
    Cancelled {
        message: Option<Py<PyAny>>,
    },
}

/// A done-callback and the context it runs in.
struct Callback {
    function: Py<PyAny>,
    context: Py<PyAny>,
}

impl WakeupFuture {
    /// A pending future of `home`'s loop, marked blocking, as a task expects what it is yielded.
    pub(crate) fn new(py: Python<'_>, home: Arc<Home>) -> PyResult<Py<Self>> {
        #[cfg(not(any(Py_LIMITED_API, Py_GIL_DISABLED, PyPy)))]
        TRAVERSE_SLOT.run(|| crate::visit::install_tp_traverse::<WakeupFuture>(py));
        Py::new(
            py,
            WakeupFuture {
                home,
                state: GilCell::new(State::Pending {
                    blocking: true,
                    first: None,
                    more: None,
                }),
            },
        )
    }

    pub(crate) fn home(&self) -> &Arc<Home> {
        &self.home
    }

    /// Resolves the future (with `None`) unless it is already done, and schedules its
    /// callbacks on the loop. On the loop's thread.
    pub(crate) fn resolve(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::finish(slf, State::Resolved).map(drop)
    }

    /// Whether the future is resolved or cancelled.
    pub(crate) fn is_done(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(!matches!(*self.borrow(py)?, State::Pending { .. }))
    }

    fn borrow(&self, py: Python<'_>) -> PyResult<GilGuard<'_, State>> {
        self.state
            .try_borrow_mut(py)
            .ok_or_else(|| PyRuntimeError::new_err("WakeupFuture used from two threads at once"))
    }

    /// Leaves **pending** for `done` and schedules the callbacks; false if already done.
    fn finish(slf: &Bound<'_, Self>, done: State) -> PyResult<bool> {
        let (first, more) = {
            let mut state = slf.get().borrow(slf.py())?;
            let State::Pending { first, more, .. } = &mut *state else {
                return Ok(false);
            };
            let callbacks = (first.take(), more.take());
            *state = done;
            callbacks
        };
        // Every callback is scheduled, even after one failed to be: the first error is raised.
        let mut outcome = Ok(true);
        for callback in first.into_iter().chain(more.into_iter().flat_map(|more| *more)) {
            if let Err(err) = schedule(slf, callback) {
                outcome = outcome.and(Err(err));
            }
        }
        outcome
    }

    /// What `result()` and `exception()` report of a cancelled future.
    fn cancelled_error(py: Python<'_>, message: Option<&Py<PyAny>>) -> PyErr {
        match message {
            Some(message) => CancelledError::new_err((message.clone_ref(py),)),
            None => CancelledError::new_err(()),
        }
    }
}

/// `loop.call_soon(function, future, context=context)`, as `asyncio.Future` schedules its
/// callbacks. A `KeyboardInterrupt` raised by a pure-Python loop's `call_soon` does not lose
/// the callback: it is scheduled again, then the interrupt propagates.
fn schedule(future: &Bound<'_, WakeupFuture>, callback: Callback) -> PyResult<()> {
    let py = future.py();
    let event_loop = future.get().home.event_loop().bind(py);
    let call = || call_soon(event_loop, &callback, future.as_any());
    match call() {
        Err(err) if !err.is_instance_of::<PyException>(py) => {
            let _ = call();
            Err(err)
        }
        outcome => outcome,
    }
}

/// `event_loop.call_soon(callback.function, argument, context=callback.context)`, by
/// vectorcall: no argument tuple, no keyword dict.
#[cfg(any(Py_3_12, not(any(Py_LIMITED_API, PyPy))))]
fn call_soon(
    event_loop: &Bound<'_, PyAny>,
    callback: &Callback,
    argument: &Bound<'_, PyAny>,
) -> PyResult<()> {
    use pyo3::ffi;
    use pyo3::sync::PyOnceLock;
    use pyo3::types::PyTuple;

    static KEYWORDS: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    let py = event_loop.py();
    let keywords = KEYWORDS.get_or_try_init(py, || {
        PyResult::Ok(PyTuple::new(py, [intern!(py, "context")])?.unbind())
    })?;
    let arguments = [
        event_loop.as_ptr(),
        callback.function.as_ptr(),
        argument.as_ptr(),
        callback.context.as_ptr(),
    ];
    // SAFETY: attached (`py`); `arguments` holds borrowed references that outlive the call:
    // the receiver and 2 positional arguments (the count, 3, includes the receiver), then
    // one keyword value per name in `keywords`, a tuple of strings.
    let result = unsafe {
        ffi::PyObject_VectorcallMethod(
            intern!(py, "call_soon").as_ptr(),
            arguments.as_ptr(),
            3,
            keywords.as_ptr(),
        )
    };
    // SAFETY: a new reference, or null with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, result) }.map(drop)
}

/// `event_loop.call_soon(callback.function, argument, context=callback.context)`: the
/// limited API before 3.12 has no vectorcall.
#[cfg(not(any(Py_3_12, not(any(Py_LIMITED_API, PyPy)))))]
fn call_soon(
    event_loop: &Bound<'_, PyAny>,
    callback: &Callback,
    argument: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = event_loop.py();
    let keywords = PyDict::new(py);
    keywords.set_item(intern!(py, "context"), &callback.context)?;
    event_loop
        .call_method(
            intern!(py, "call_soon"),
            (&callback.function, argument),
            Some(&keywords),
        )
        .map(drop)
}

/// A context for a callback added without one: a copy of the current context, as asyncio's.
fn context_or_current(py: Python<'_>, context: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    match context {
        Some(context) if !context.is_none(py) => Ok(context),
        _ => Ok(glue::copy_context(py)?.call0()?.unbind()),
    }
}

/// The class's `tp_traverse`, filled in before its first instance (full API).
#[cfg(not(any(Py_LIMITED_API, Py_GIL_DISABLED, PyPy)))]
static TRAVERSE_SLOT: InstallOnce = InstallOnce::new();

impl Traverse for WakeupFuture {
    /// The callbacks hold the task (its wake-up is a bound method), which holds this future;
    /// nothing while the state is borrowed (then it holds nothing that another reference does
    /// not).
    fn traverse<V: Visit>(&self, visit: &V) -> Result<(), V::Error> {
        // SAFETY: the collector runs attached.
        let Some(state) = (unsafe { self.state.try_borrow_mut_attached() }) else {
            return Ok(());
        };
        match &*state {
            State::Pending { first, more, .. } => {
                for callback in first.iter().chain(more.iter().flat_map(|more| more.iter())) {
                    visit.visit(&callback.function)?;
                    visit.visit(&callback.context)?;
                }
                Ok(())
            }
            State::Cancelled {
                message: Some(message),
            } => visit.visit(message),
            State::Cancelled { message: None } | State::Resolved => Ok(()),
        }
    }
}

#[pymethods]
impl WakeupFuture {
    #[getter(_asyncio_future_blocking)]
    fn blocking(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(matches!(
            *self.borrow(py)?,
            State::Pending { blocking: true, .. }
        ))
    }

    /// Set false by the task that takes the future. A finished future never blocks.
    #[setter(_asyncio_future_blocking)]
    fn set_blocking(&self, py: Python<'_>, value: bool) -> PyResult<()> {
        if let State::Pending { blocking, .. } = &mut *self.borrow(py)? {
            *blocking = value;
        }
        Ok(())
    }

    fn get_loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.home.event_loop().clone_ref(py)
    }

    fn done(&self, py: Python<'_>) -> PyResult<bool> {
        self.is_done(py)
    }

    fn cancelled(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(matches!(*self.borrow(py)?, State::Cancelled { .. }))
    }

    /// `None` once resolved; `CancelledError` once cancelled; `InvalidStateError` before.
    fn result(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match &*self.borrow(py)? {
            State::Resolved => Ok(None),
            State::Cancelled { message } => Err(Self::cancelled_error(py, message.as_ref())),
            State::Pending { .. } => Err(InvalidStateError::new_err("Result is not ready.")),
        }
    }

    /// `None` once resolved (a wake-up carries no exception); as `result()` otherwise.
    fn exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.result(py)
    }

    /// Cancels the wait: the task resumes with `CancelledError(msg)`. False if already done.
    #[pyo3(signature = (msg = None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        let message = msg.filter(|msg| !msg.is_none(slf.py()));
        Self::finish(slf, State::Cancelled { message })
    }

    #[pyo3(signature = (function, *, context = None))]
    fn add_done_callback(
        slf: &Bound<'_, Self>,
        function: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let callback = Callback {
            function,
            context: context_or_current(py, context)?,
        };
        let done = {
            let mut state = slf.get().borrow(py)?;
            match &mut *state {
                State::Pending { first, more, .. } => {
                    if first.is_none() {
                        *first = Some(callback);
                    } else {
                        more.get_or_insert_with(Default::default).push(callback);
                    }
                    None
                }
                _ => Some(callback),
            }
        };
        match done {
            Some(callback) => schedule(slf, callback),
            None => Ok(()),
        }
    }

    /// Removes every callback equal to `function`; returns how many.
    fn remove_done_callback(&self, py: Python<'_>, function: Bound<'_, PyAny>) -> PyResult<usize> {
        let kept: Vec<Callback> = {
            let mut state = self.borrow(py)?;
            let State::Pending { first, more, .. } = &mut *state else {
                return Ok(0);
            };
            first
                .take()
                .into_iter()
                .chain(more.take().into_iter().flat_map(|more| *more))
                .collect()
        };
        // Compared with the state released: `==` may run Python code.
        let mut removed = 0;
        let mut remaining = Vec::with_capacity(kept.len());
        for callback in kept {
            if callback.function.bind(py).eq(&function)? {
                removed += 1;
            } else {
                remaining.push(callback);
            }
        }
        let mut state = self.borrow(py)?;
        if let State::Pending { first, more, .. } = &mut *state {
            let mut remaining = remaining.into_iter();
            *first = remaining.next();
            let rest: Vec<Callback> = remaining.collect();
            *more = (!rest.is_empty()).then(|| Box::new(rest));
        }
        Ok(removed)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(match &*self.borrow(py)? {
            State::Pending { .. } => "<WakeupFuture pending>",
            State::Resolved => "<WakeupFuture finished result=None>",
            State::Cancelled { .. } => "<WakeupFuture cancelled>",
        })
    }

    /// See [`Traverse`]; with the full API, the class's slot calls it directly.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        Traverse::traverse(self, &visit)
    }

    /// A forgotten task and its future: the callbacks go (the future stays pending).
    fn __clear__(&self, py: Python<'_>) {
        let dropped = self
            .state
            .try_borrow_mut(py)
            .map(|mut state| match &mut *state {
                State::Pending { first, more, .. } => (first.take(), more.take(), None),
                State::Cancelled { message } => (None, None, message.take()),
                State::Resolved => (None, None, None),
            });
        drop(dropped);
    }
}

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
//! | **pending** | the done-callbacks (the task's wake-up, in practice the only one) | [`WakeupFuture::new`] | `resolve` (the wake-up) or `cancel` |
//! | **resolved** | nothing | [`WakeupFuture::resolve`] | never |
//! | **cancelled** | the message of `cancel(msg)`, for the `CancelledError` of `result()` | `cancel` | never |
//!
//! Every state keeps `_asyncio_future_blocking` (true when yielded, until the task that takes
//! the future clears it): a future that finishes between its yield and the task's look at it
//! must still read as one to wait on.
//!
//! Invariants: callbacks are scheduled with the loop's `call_soon` once, when the future
//! leaves **pending**, or at once when added to a finished future, as `asyncio.Future` does
//! (handed the future, except a C task's wake-up, which is handed a [finished
//! stand-in](super::finished_future) with the same outcome, so that it reads it in C);
//! no Python code runs while the state is borrowed, and no callback leaves the state except
//! to be scheduled or dropped (`remove_done_callback` compares a snapshot, since `==` may run
//! anything, this future's own methods included).
//!
//! anyio: its cancel scopes look at `task._fut_waiter` and hold back a cancellation only while
//! that is a *done* `asyncio.Future`; this one never passes that test, so anyio cancels the
//! task, which is what it does for any waiter that is not done.

use std::sync::Arc;

use pyo3::exceptions::asyncio::{CancelledError, InvalidStateError};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};

use super::call_soon::call_soon;
use super::done_callbacks::{Callback, DoneCallbacks};
use super::finished_future::{self, Outcome};
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
        /// `_asyncio_future_blocking`, in every state.
        blocking: bool,
        callbacks: DoneCallbacks,
    },
    Resolved {
        blocking: bool,
    },
    Cancelled {
        blocking: bool,
        message: Option<Py<PyAny>>,
    },
}

impl State {
    /// How a finished future ended, where a C task's wake-up may read a stand-in for it
    /// ([`finished_future`]); `None` while pending, or with a message to deliver.
    fn outcome(&self) -> Option<Outcome> {
        match self {
            State::Resolved { .. } => Some(Outcome::Resolved),
            State::Cancelled { message: None, .. } => Some(Outcome::Cancelled),
            State::Cancelled {
                message: Some(_), ..
            }
            | State::Pending { .. } => None,
        }
    }

    fn blocking(&mut self) -> &mut bool {
        match self {
            State::Pending { blocking, .. }
            | State::Resolved { blocking }
            | State::Cancelled { blocking, .. } => blocking,
        }
    }
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
                    callbacks: DoneCallbacks::default(),
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
        Self::finish(slf, |blocking| State::Resolved { blocking }).map(drop)
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
    fn finish(slf: &Bound<'_, Self>, done: impl FnOnce(bool) -> State) -> PyResult<bool> {
        let (mut callbacks, outcome) = {
            let mut state = slf.get().borrow(slf.py())?;
            let State::Pending {
                blocking,
                callbacks,
            } = &mut *state
            else {
                return Ok(false);
            };
            let callbacks = std::mem::take(callbacks);
            *state = done(*blocking);
            (callbacks, state.outcome())
        };
        // Every callback is scheduled, even after one failed to be: the first error is raised.
        let mut scheduled = Ok(true);
        for callback in callbacks.take() {
            if let Err(err) = schedule(slf, callback, outcome) {
                scheduled = scheduled.and(Err(err));
            }
        }
        scheduled
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
/// callbacks, and as it with no second try: a `KeyboardInterrupt` raised inside a pure-Python
/// loop's `call_soon` may come before or after the callback was queued, and queueing it twice
/// would step the task twice. (The home runs pending signal handlers before it delivers a
/// wake-up, which leaves only a signal arriving during `call_soon` itself.)
///
/// A C task's wake-up is handed a finished stand-in rather than the future, where one exists
/// for `outcome` (see [`finished_future`]).
fn schedule(
    future: &Bound<'_, WakeupFuture>,
    callback: Callback,
    outcome: Option<Outcome>,
) -> PyResult<()> {
    let py = future.py();
    let home = &future.get().home;
    let function = callback.function.bind(py);
    // A failure to find the stand-in is raised after the callback is scheduled with the future.
    let (stand_in, failed) =
        match outcome.map(|outcome| finished_future::stand_in(home, function, outcome)) {
            Some(Ok(stand_in)) => (stand_in, None),
            Some(Err(err)) => (None, Some(err)),
            None => (None, None),
        };
    call_soon(
        home.event_loop().bind(py),
        &callback.function,
        stand_in.as_ref().unwrap_or(future.as_any()),
        &callback.context,
    )?;
    failed.map_or(Ok(()), Err)
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
    /// not). The home's objects (the loop), while this future is the home's sole owner: a
    /// closed loop that keeps a future of its own is a cycle through the home.
    fn traverse<V: Visit>(&self, visit: &V) -> Result<(), V::Error> {
        Home::traverse_as_sole_owner(&self.home, visit)?;
        // SAFETY: the collector runs attached.
        let Some(state) = (unsafe { self.state.try_borrow_mut_attached() }) else {
            return Ok(());
        };
        match &*state {
            State::Pending { callbacks, .. } => callbacks.traverse(visit),
            State::Cancelled {
                message: Some(message),
                ..
            } => visit.visit(message),
            State::Cancelled { message: None, .. } | State::Resolved { .. } => Ok(()),
        }
    }
}

#[pymethods]
impl WakeupFuture {
    #[getter(_asyncio_future_blocking)]
    fn blocking(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(*self.borrow(py)?.blocking())
    }

    /// Set false by the task that takes the future.
    #[setter(_asyncio_future_blocking)]
    fn set_blocking(&self, py: Python<'_>, value: bool) -> PyResult<()> {
        *self.borrow(py)?.blocking() = value;
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
            State::Resolved { .. } => Ok(None),
            State::Cancelled { message, .. } => Err(Self::cancelled_error(py, message.as_ref())),
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
        Self::finish(slf, |blocking| State::Cancelled { blocking, message })
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
                State::Pending { callbacks, .. } => {
                    callbacks.push(callback);
                    None
                }
                finished => Some((callback, finished.outcome())),
            }
        };
        match done {
            Some((callback, outcome)) => schedule(slf, callback, outcome),
            None => Ok(()),
        }
    }

    /// Removes every callback that is `function` or equal to it; returns how many.
    ///
    /// `==` may run any Python code, this future's methods included, so it compares a
    /// snapshot of the callbacks' functions, with the state released; the matches are then
    /// removed from the state as it is by then (by identity). A failed comparison removes
    /// nothing; a future finished meanwhile has scheduled its callbacks and removes none.
    fn remove_done_callback(&self, py: Python<'_>, function: Bound<'_, PyAny>) -> PyResult<usize> {
        let snapshot: Vec<Py<PyAny>> = match &*self.borrow(py)? {
            State::Pending { callbacks, .. } => callbacks
                .iter()
                .map(|callback| callback.function.clone_ref(py))
                .collect(),
            _ => return Ok(0),
        };
        let mut matched = Vec::new();
        for candidate in &snapshot {
            // Identity first, as `PyObject_RichCompareBool` (asyncio's comparison) does.
            if candidate.is(&function) || candidate.bind(py).eq(&function)? {
                matched.push(candidate.as_ptr());
            }
        }
        if matched.is_empty() {
            return Ok(0);
        }
        // The snapshot keeps the matched functions alive: their addresses name them.
        let removed: Vec<Callback> = {
            let mut state = self.borrow(py)?;
            let State::Pending { callbacks, .. } = &mut *state else {
                return Ok(0);
            };
            callbacks.remove(&matched)
        };
        // Dropped with the state released: a callback's finaliser may run anything.
        Ok(removed.len())
    }

    /// The `CancelledError` that `result()` raises once cancelled (asyncio's helpers, such as
    /// `gather`, ask a cancelled future for it).
    fn _make_cancelled_error(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let message = match &*self.borrow(py)? {
            State::Cancelled { message, .. } => {
                message.as_ref().map(|message| message.clone_ref(py))
            }
            _ => None,
        };
        Ok(Self::cancelled_error(py, message.as_ref())
            .into_value(py)
            .into_any())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(match &*self.borrow(py)? {
            State::Pending { .. } => "<WakeupFuture pending>",
            State::Resolved { .. } => "<WakeupFuture finished result=None>",
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
                State::Pending { callbacks, .. } => (std::mem::take(callbacks), None),
                State::Cancelled { message, .. } => (DoneCallbacks::default(), message.take()),
                State::Resolved { .. } => (DoneCallbacks::default(), None),
            });
        drop(dropped);
    }
}

//! The state machine behind a [`Coroutine`](crate::Coroutine): what `send`, `throw` and
//! `close` do, suspension after suspension.
//!
//! | state | fields that hold | entered by | left by |
//! |---|---|---|---|
//! | **new** | `future`; nothing else | `Coroutine::new` | the first `send(None)` |
//! | **polling** | `started`; `waiter` once a poll kept or woke its waker | `send`, a wake-up's resumption, a delegate finishing | the poll's outcome |
//! | **parked** | `parker` (bound to the task and loop at the first suspension, which also registers the coroutine with its loop's home); the waiter holds the wake-up | a poll returning `Pending` by the delegation rule's "schedule" side | the loop resuming the task (`send`) or throwing in (`throw`) |
//! | **delegating** | `delegate` (the awaitable's `__await__` iterator); `parker` (for the home) | a poll that filed one request and nothing else | the delegate finishing (poll again) or `throw`/`close` forwarded to it |
//! | **finished** | `future` empty, the waiter closed, no delegate | the future's output, a panic, an exception ending it, `close`, the loop dying | never |
//!
//! Only the loop's thread moves the machine (it runs under the coroutine's borrow, a
//! [`GilCell`]'s, taken by `send`/`throw`/`close`); wakers from other threads only touch the
//! [`Waiter`].

mod rare;
mod reading;
mod schedule;

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;

use crate::backend::{Backend, Parker};
use crate::census;
use crate::delegation::{self, Delegate, Input, Request, Step};
use crate::gil_cell::GilCell;
use crate::home::Dependent;
use crate::rust_to_py::cancel_handle::Cancellation;
use crate::rust_to_py::errors::{already_awaited, coroutine_error};
use crate::rust_to_py::future_cell::{DriverFlags, FutureCell};
use crate::rust_to_py::panic::panic_exception;
use crate::rust_to_py::pollable::PyPoll;
use crate::waker::{PollWaker, Waiter};
use rare::Rare;

/// How a resumed coroutine leaves `send`/`throw` when it does not raise.
pub(crate) enum Resumed {
    /// Suspended: this object goes to the event loop.
    Yield(Py<PyAny>),
    /// Finished with this result.
    Return(Py<PyAny>),
}

/// A coroutine's driver as its coroutine and its loop's home share it: `GilCell<Driver<F>>`
/// for the future's own type, behind this trait so that the home can hold it as a plain
/// `Weak<dyn Dependent>` (a `Weak` of the unsized driver cannot become one, and boxing it would
/// cost every suspended coroutine an allocation).
pub(crate) trait SharedDriver: Send + Sync {
    /// The driver, with the future unsized.
    fn cell(&self) -> &GilCell<Driver>;

    /// The driver, to a sole owner.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    fn get_mut(&mut self) -> &mut Driver;

    /// How the home of the coroutine's loop holds it.
    fn dependent(self: Arc<Self>) -> Weak<dyn Dependent>;
}

impl<F: PyPoll + 'static> SharedDriver for GilCell<Driver<F>> {
    fn cell(&self) -> &GilCell<Driver> {
        self
    }

    fn get_mut(&mut self) -> &mut Driver {
        GilCell::get_mut(self)
    }

    fn dependent(self: Arc<Self>) -> Weak<dyn Dependent> {
        Arc::<Self>::downgrade(&self)
    }
}

/// The coroutine's mutable state, behind the coroutine's borrow, with the future at its end:
/// created for the future's own type `F` and used through `dyn PyPoll`, so the state and the
/// future take one allocation.
pub(crate) struct Driver<F: ?Sized = dyn PyPoll> {
    /// Created when a poll keeps or wakes its waker; lives as long as the coroutine.
    waiter: Option<Arc<Waiter>>,
    /// Created at the first suspension or delegation, which binds the coroutine to its task.
    parker: Option<Parker>,
    /// The delegated awaitable, the cancel handle's side, the `cr_frame` owner.
    rare: Rare,
    /// Entered around each resumption: the coroutine's own, or its generator's.
    #[cfg(feature = "tracing")]
    pub(crate) span: Option<tracing::Span>,
    /// Empty once the coroutine has finished (returned, raised, was closed or cancelled).
    /// Its flags are the driver's: started; registered (the home of the loop it is bound to
    /// knows it); rethrown (the exception leaving the last step is the one thrown in, a
    /// cancellation, not an error of the Rust function); the backend fixed for it.
    future: FutureCell<F>,
}

/// What one poll of the future asks for next.
enum Polled {
    Ready(PyResult<Py<PyAny>>),
    /// Run this awaitable in the task until it finishes, then poll again.
    Delegate(Request),
    /// Suspend the task until the waker is called.
    Park,
}

impl<F: PyPoll> Driver<F> {
    pub(crate) fn new(
        future: F,
        cancellation: Option<Arc<Cancellation>>,
        backend: Option<Backend>,
    ) -> Self {
        Driver {
            waiter: None,
            parker: None,
            rare: Rare::with_cancellation(cancellation),
            #[cfg(feature = "tracing")]
            span: None,
            future: FutureCell::new(future, backend),
        }
    }
}

impl<F: ?Sized> Driver<F> {
    pub(crate) fn set_backend(&mut self, backend: Backend) {
        self.future.flags.set_backend(Some(backend));
    }

    /// Whether the coroutine was started (sent a value or thrown into).
    pub(crate) fn started(&self) -> bool {
        self.future.flags.has(DriverFlags::STARTED)
    }

    /// Records that the home of the coroutine's loop knows it.
    pub(crate) fn set_registered(&mut self) {
        self.future.flags.set(DriverFlags::REGISTERED, true);
    }

    fn registered(&self) -> bool {
        self.future.flags.has(DriverFlags::REGISTERED)
    }

    fn set_started(&mut self) {
        self.future.flags.set(DriverFlags::STARTED, true);
    }
}

impl Driver {
    pub(crate) fn check_not_finished(&self) -> PyResult<()> {
        if self.future.is_empty() {
            return Err(already_awaited());
        }
        Ok(())
    }

    /// Whether the last step's exception was the one thrown in; resets the flag.
    pub(crate) fn take_rethrown(&mut self) -> bool {
        let rethrown = self.future.flags.has(DriverFlags::RETHROWN);
        self.future.flags.set(DriverFlags::RETHROWN, false);
        rethrown
    }

    /// The home to register with, once the coroutine is bound to a loop and not yet known;
    /// none for a coroutine that finished in the step that bound it (a delegated awaitable
    /// that ended at once): there is nothing left for the loop's death to end.
    pub(crate) fn home_to_register(&self) -> Option<&Arc<crate::home::Home>> {
        match (&self.parker, self.registered()) {
            (Some(parker), false) if !self.is_finished() => Some(parker.home()),
            _ => None,
        }
    }

    pub(crate) fn send(&mut self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Resumed> {
        self.check_not_finished()?;
        if !self.started() && !value.is_none() {
            return Err(PyTypeError::new_err(
                "can't send non-None value to a just-started coroutine",
            ));
        }
        self.set_started();
        if self.rare.has_delegate() {
            return self.run(py, Some(Input::Send(value.clone())));
        }
        if let Some(parker) = &mut self.parker {
            parker.check_resumption(py)?;
            match parker.resume(py, value) {
                Ok(None) => {}
                Ok(Some(suspended_again)) => return Ok(Resumed::Yield(suspended_again.unbind())),
                Err(exception) => return self.deliver(py, exception),
            }
        }
        self.run(py, None)
    }

    pub(crate) fn throw(&mut self, py: Python<'_>, exception: PyErr) -> PyResult<Resumed> {
        self.check_not_finished()?;
        self.set_started();
        if self.rare.has_delegate() {
            // Raised at the delegated await, as Python's `await` does; the future sees the
            // outcome through its `PyFuture` (and its cancel handle, if it has one).
            if let Some(cancellation) = self.rare.cancellation() {
                cancellation.deliver(exception.clone_ref(py));
            }
            return self.run(py, Some(Input::Throw(exception)));
        }
        if let Some(parker) = &mut self.parker {
            parker.abandon(py);
        }
        self.deliver(py, exception)
    }

    /// An exception reached the suspension point: it ends the coroutine, or, when the future
    /// handles cancellation itself, goes to its [`CancelHandle`](crate::CancelHandle).
    fn deliver(&mut self, py: Python<'_>, exception: PyErr) -> PyResult<Resumed> {
        match self.rare.cancellation() {
            Some(cancellation) => {
                let waiter = self.waiter.get_or_insert_with(Waiter::new);
                waiter.set_cancel_delivered();
                cancellation.deliver(exception);
                self.run(py, None)
            }
            None => {
                self.finish(py);
                self.future.flags.set(DriverFlags::RETHROWN, true);
                Err(exception)
            }
        }
    }

    /// Drives the delegate (starting with `input`) and the future in turn until the task must
    /// suspend or the coroutine finishes. A loop, not recursion: a future may await any number
    /// of ready awaitables in one go.
    fn run(&mut self, py: Python<'_>, mut input: Option<Input<'_>>) -> PyResult<Resumed> {
        loop {
            if let Some(delegate) = self.rare.take_delegate() {
                let input = input
                    .take()
                    .unwrap_or_else(|| Input::Send(py.None().into_bound(py)));
                match delegate.step(py, input) {
                    Step::Yielded(delegate, yielded) => {
                        self.rare.set_delegate(Some(delegate));
                        return Ok(Resumed::Yield(yielded));
                    }
                    Step::Finished => {}
                }
            }
            match self.poll(py) {
                Polled::Ready(Ok(output)) => return Ok(Resumed::Return(output)),
                Polled::Ready(Err(err)) => return Err(coroutine_error(py, err)),
                Polled::Delegate(request) => {
                    // Bound to its task and loop from now on: the loop's death ends it.
                    if let Err(err) = self.parker(py) {
                        let _ = request.sender.send(Err(err.clone_ref(py)));
                        self.finish(py);
                        return Err(err);
                    }
                    self.rare.set_delegate(Delegate::start(py, request));
                }
                Polled::Park => {
                    return self
                        .park(py)
                        .map(Resumed::Yield)
                        .inspect_err(|_| self.finish(py));
                }
            }
        }
    }

    fn poll(&mut self, py: Python<'_>) -> Polled {
        let Some(mut future) = self.future.pinned() else {
            return Polled::Ready(Err(already_awaited()));
        };
        let ((polled, mut requests), report) = PollWaker::run(self.waiter.as_ref(), |waker| {
            delegation::collect(waker.data(), || {
                let mut cx = Context::from_waker(waker);
                panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll_py(py, &mut cx)))
            })
        });
        if self.waiter.is_none() {
            self.waiter = report.waiter;
        }
        // The delegation rule (see `crate::delegation`).
        let delegate = matches!(polled, Ok(Poll::Pending))
            && requests.len() == 1
            && !requests[0].foreign
            && !report.kept
            && !report.woken;
        let polled = match polled {
            Ok(Poll::Pending) if delegate => match requests.pop() {
                Some(request) => return Polled::Delegate(request),
                None => Polled::Park,
            },
            Ok(Poll::Pending) => Polled::Park,
            Ok(Poll::Ready(output)) => {
                self.finish(py);
                Polled::Ready(output)
            }
            Err(payload) => {
                self.finish(py);
                Polled::Ready(Err(panic_exception(payload)))
            }
        };
        if !requests.is_empty() {
            self.schedule(py, requests);
        }
        polled
    }

    /// The parker, created at the first suspension or delegation: detects the backend unless
    /// it was given.
    pub(super) fn parker(&mut self, py: Python<'_>) -> PyResult<&mut Parker> {
        if self.parker.is_none() {
            let waiter = Arc::clone(self.waiter.get_or_insert_with(Waiter::new));
            let (backend, running) = match self.future.flags.backend() {
                Some(backend) => (backend, None),
                None => Backend::detect(py)?,
            };
            self.parker = Some(Parker::new(py, backend, running, waiter)?);
        }
        match &mut self.parker {
            Some(parker) => Ok(parker),
            None => Err(PyRuntimeError::new_err("no event loop")),
        }
    }

    fn park(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let waiter = Arc::clone(self.waiter.get_or_insert_with(Waiter::new));
        Ok(self.parker(py)?.park(py, &*waiter)?.unbind())
    }

    /// Drops the future and everything tied to the current suspension.
    pub(crate) fn finish(&mut self, py: Python<'_>) {
        self.count_finished();
        if let Some(waiter) = &self.waiter {
            waiter.close();
        }
        if let Some(parker) = &mut self.parker {
            parker.abandon(py);
        }
        if let Some(delegate) = self.rare.take_delegate() {
            delegate.close(py);
        }
        self.rare.set_frame_owner(None);
        self.future.clear();
    }
}

impl<F: PyPoll + 'static> Dependent for GilCell<Driver<F>> {
    /// The loop the coroutine is bound to died: its task will never run again, so the
    /// coroutine finishes now (an asyncio task left pending by `loop.close()` would otherwise
    /// keep it forever: the cycle through Rust is invisible to Python's GC).
    fn loop_died(&self, py: Python<'_>) {
        // Locked: it is running right now, so its loop is not dead after all.
        if let Some(mut driver) = self.cell().try_borrow_mut(py) {
            driver.finish(py);
        }
    }
}

impl<F: ?Sized> Driver<F> {
    /// A coroutine that was counted as suspended leaves the count when it finishes: the
    /// first time its future goes (called before it goes).
    fn count_finished(&self) {
        if self.registered() && !self.future.is_empty() {
            census::SUSPENDED_COROUTINES.remove();
        }
    }
}

impl<F: ?Sized> Drop for Driver<F> {
    fn drop(&mut self) {
        self.count_finished();
        if let Some(waiter) = &self.waiter {
            waiter.close();
        }
    }
}

//! The state machine behind a [`Coroutine`](crate::Coroutine): what `send`, `throw` and
//! `close` do, suspension after suspension.
//!
//! | state | fields that hold | entered by | left by |
//! |---|---|---|---|
//! | **new** | `future`; nothing else | `Coroutine::new` | the first `send(None)` |
//! | **polling** | `started`; the waiter records wakes | `send`, a wake-up's resumption, a delegate finishing | the poll's outcome |
//! | **parked** | `parker` (bound to the task and loop at the first suspension, which also registers the coroutine with its loop's home); the waiter holds the wake-up | a poll returning `Pending` by the delegation rule's "schedule" side | the loop resuming the task (`send`) or throwing in (`throw`) |
//! | **delegating** | `delegate` (the awaitable's `__await__` iterator); `parker` (for the home) | a poll that filed one request and nothing else | the delegate finishing (poll again) or `throw`/`close` forwarded to it |
//! | **finished** | `future` empty, the waiter closed, no delegate, no parker | the future's output, a panic, an exception ending it, `close`, the loop dying | never |
//!
//! Only the loop's thread moves the machine (it runs under the coroutine's borrow, a
//! [`GilCell`]'s, taken by `send`/`throw`/`close`); wakers from other threads only touch the
//! [`Waiter`]. Both live in one allocation ([`Shared`]); the steps that may make a waker or
//! park get the coroutine's reference to it (its [`Owner`]).
//!
//! [`Shared`]: shared::Shared

mod rare;
mod reading;
mod schedule;
pub(crate) mod shared;
mod thrown;

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;

use crate::backend::{Abort, Backend, Parker};
use crate::census;
use crate::delegation::{self, Delegate, Input, Request, Step};
use crate::gil_cell::GilCell;
use crate::home::Dependent;
use crate::rust_to_py::cancel_handle::Cancellation;
use crate::rust_to_py::errors::{already_awaited, coroutine_error};
use crate::rust_to_py::future_cell::{DriverFlags, FutureCell};
use crate::rust_to_py::panic::panic_exception;
use crate::rust_to_py::pollable::{PyOutcome, PyPoll};
use crate::waker::{PollWaker, Waiter};
use rare::Rare;

/// A step's outcome, its error boxed as a poll's is ([`PyOutcome`]): 16 bytes, in registers.
pub(crate) type Stepped = Result<Resumed, Box<PyErr>>;

/// How a resumed coroutine leaves `send`/`throw` when it does not raise.
pub(crate) enum Resumed {
    /// Suspended: this object goes to the event loop.
    Yield(Py<PyAny>),
    /// Finished with this result.
    Return(Py<PyAny>),
}

/// What the coroutine object holds: the allocation with the future's type erased, and the
/// strong reference every new waker clones.
pub(crate) type Owner = Arc<dyn SharedDriver>;

/// The allocation as the coroutine and its driver use it, for any future type. A trait, not
/// `Shared<dyn PyPoll>`, so that the home can hold it as a plain `Weak<dyn Dependent>` and
/// trio as a `Weak<dyn Abort>` (a `Weak` of an unsized struct cannot become another trait
/// object, and boxing it would cost every suspended coroutine an allocation).
pub(crate) trait SharedDriver: Send + Sync {
    /// The driver, with the future unsized.
    fn cell(&self) -> &GilCell<Driver>;

    /// The waker state, which wakers reach from any thread without the driver.
    fn waiter(&self) -> &Waiter;

    /// The driver, to a sole owner.
    fn get_mut(&mut self) -> &mut Driver;

    /// How the home of the coroutine's loop holds it.
    fn dependent(self: Arc<Self>) -> Weak<dyn Dependent>;

    /// How trio's abort function holds it.
    fn abort_handle(self: Arc<Self>) -> Weak<dyn Abort>;

    /// A waker of the future: this reference, moved into it.
    fn into_waker(self: Arc<Self>) -> Waker;
}

/// The coroutine's mutable state, behind the coroutine's borrow, with the future at its end:
/// created for the future's own type `F` and used through `dyn PyPoll`, so the state and the
/// future take one allocation (with the waiter: [`Shared`](shared::Shared)).
pub(crate) struct Driver<F: ?Sized = dyn PyPoll> {
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
    Ready(PyOutcome),
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

    /// The flags, for the one the coroutine object keeps here (`QUIET`).
    pub(crate) fn flags(&mut self) -> &mut DriverFlags {
        &mut self.future.flags
    }

    /// Whether dropping the coroutine unstarted warns that it was never awaited.
    pub(crate) fn warns_unawaited(&self) -> bool {
        !self.future.flags.has(DriverFlags::QUIET)
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

    pub(crate) fn send(
        &mut self,
        py: Python<'_>,
        owner: &Owner,
        value: &Bound<'_, PyAny>,
    ) -> Stepped {
        self.check_not_finished()?;
        if !self.started() && !value.is_none() {
            return Err(Box::new(PyTypeError::new_err(
                "can't send non-None value to a just-started coroutine",
            )));
        }
        self.set_started();
        if self.rare.has_delegate() {
            return self.run(py, owner, Some(Input::Send(value.clone())));
        }
        if let Some(parker) = &mut self.parker {
            parker.check_resumption(py, value)?;
            match parker.resume(py, value) {
                Ok(None) => {}
                Ok(Some(suspended_again)) => return Ok(Resumed::Yield(suspended_again.unbind())),
                Err(exception) => return self.deliver(py, owner, exception, true),
            }
        }
        self.run(py, owner, None)
    }

    /// Drives the delegate (starting with `input`) and the future in turn until the task must
    /// suspend or the coroutine finishes. A loop, not recursion: a future may await any number
    /// of ready awaitables in one go.
    fn run(&mut self, py: Python<'_>, owner: &Owner, mut input: Option<Input<'_>>) -> Stepped {
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
            match self.poll(py, owner) {
                Polled::Ready(Ok(output)) => return Ok(Resumed::Return(output)),
                Polled::Ready(Err(err)) => return Err(coroutine_error(py, *err)),
                Polled::Delegate(request) => {
                    // Bound to its task and loop from now on: the loop's death ends it.
                    if let Err(err) = self.parker(py, owner) {
                        let _ = request.sender.send(Err(err.clone_ref(py)));
                        self.finish(py, owner.waiter());
                        return Err(Box::new(err));
                    }
                    self.rare.set_delegate(Delegate::start(py, request));
                }
                Polled::Park => {
                    return self
                        .park(py, owner)
                        .map(Resumed::Yield)
                        .map_err(Box::new)
                        .inspect_err(|_| self.finish(py, owner.waiter()));
                }
            }
        }
    }

    fn poll(&mut self, py: Python<'_>, owner: &Owner) -> Polled {
        let used = self.future.flags.has(DriverFlags::WAITER_USED);
        let Some(mut future) = self.future.pinned() else {
            return Polled::Ready(Err(Box::new(already_awaited())));
        };
        let new_waker = || Arc::clone(owner).into_waker();
        let ((polled, mut requests), report) =
            PollWaker::run(owner.waiter(), used, &new_waker, |waker| {
                delegation::collect(waker.data(), || {
                    let mut cx = Context::from_waker(waker);
                    panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll_py(py, &mut cx)))
                })
            });
        if report.kept || report.woken {
            self.future.flags.set(DriverFlags::WAITER_USED, true);
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
                self.finish(py, owner.waiter());
                Polled::Ready(output)
            }
            Err(payload) => {
                self.finish(py, owner.waiter());
                Polled::Ready(Err(Box::new(panic_exception(payload))))
            }
        };
        if !requests.is_empty() {
            self.schedule(py, owner, requests);
        }
        polled
    }

    /// The parker, created at the first suspension or delegation: detects the backend unless
    /// it was given.
    pub(super) fn parker(&mut self, py: Python<'_>, owner: &Owner) -> PyResult<&mut Parker> {
        if self.parker.is_none() {
            let waiter = Arc::clone(owner).abort_handle();
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

    fn park(&mut self, py: Python<'_>, owner: &Owner) -> PyResult<Py<PyAny>> {
        self.future.flags.set(DriverFlags::WAITER_USED, true);
        let registered = self.registered();
        let parker = self.parker(py, owner)?;
        let home = Arc::as_ptr(parker.home());
        let yielded = parker.park(py, owner.waiter())?.unbind();
        // Moved to a new home of its loop (the last one died or handed over to a successor):
        // the new one's death is the coroutine's end now. Where the registration moved there
        // with a hand-over already, the coroutine is registered twice, which only means that
        // the loop's death reaches it twice (the second time finds it ended or resumed).
        if registered && !std::ptr::eq(home, Arc::as_ptr(parker.home())) {
            parker.home().depend(py, Arc::clone(owner).dependent());
        }
        Ok(yielded)
    }

    /// Drops the future and everything tied to the current suspension; `waiter` is the
    /// coroutine's, closed so that a later wake does nothing.
    pub(crate) fn finish(&mut self, py: Python<'_>, waiter: &Waiter) {
        self.count_finished();
        // A waiter never used has no waker that could wake it.
        if self.future.flags.has(DriverFlags::WAITER_USED) {
            waiter.close();
        }
        // The parker goes with the suspension: it holds the loop's home (and so the loop),
        // which a finished coroutine, kept by a done task that a closed loop keeps, would
        // otherwise hold in a cycle that only Rust knows of.
        if let Some(mut parker) = self.parker.take() {
            parker.abandon(py);
        }
        if let Some(delegate) = self.rare.take_delegate() {
            delegate.close(py);
        }
        self.rare.set_frame_owner(None);
        self.future.clear();
    }
}

impl Driver {
    /// The loop the coroutine is bound to died. A loop that closed (or was collected) never
    /// runs the coroutine's task again, so the coroutine finishes now: an asyncio task left
    /// pending by `loop.close()` would otherwise keep it, and the loop, forever (the cycle
    /// through Rust is invisible to Python's GC). A loop that runs on here, or is open and
    /// idle, lost only its home, and no successor took over (see
    /// [`Parker::resume_after_loss`]): the task is resumed instead, and its next wait moves
    /// to the loop's new home.
    pub(crate) fn loop_died(&mut self, py: Python<'_>, waiter: &Waiter) {
        let resumed = self
            .parker
            .as_ref()
            .is_some_and(|parker| parker.resume_after_loss(py));
        if !resumed {
            self.finish(py, waiter);
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

impl Driver {
    /// The coroutine object is going while a waker may keep this driver's allocation alive:
    /// the coroutine finishes, and everything that holds Python objects goes now, attached
    /// (see [`Shared`](shared::Shared)).
    pub(crate) fn release(&mut self, py: Python<'_>, waiter: &Waiter) {
        self.finish(py, waiter);
        self.rare = Rare::default();
    }
}

impl<F: ?Sized> Drop for Driver<F> {
    fn drop(&mut self) {
        self.count_finished();
    }
}

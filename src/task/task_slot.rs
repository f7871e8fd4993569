//! How a dropped `PyFuture` cancels the Python work it was waiting for.

use std::sync::{Arc, Mutex, PoisonError};

use crate::exit_guard::attach_unless_exiting;
use crate::home::{Home, Job};

/// The Python side of a [`PyFuture`](crate::PyFuture), once known: Rust cancels it through
/// this slot, from any thread; the backend's launch attaches a [`Canceller`] once the task
/// exists. A
/// plain Rust object, so that a `PyFuture` can exist before its task does, on a thread that
/// never attaches to the interpreter.
#[derive(Default)]
pub(crate) struct TaskSlot {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    cancel_requested: bool,
    canceller: Option<Canceller>,
}

/// How to cancel one piece of Python work.
pub(crate) enum Canceller {
    /// On a loop's thread: through its home from anywhere else.
    OnLoop(Arc<Home>, Job),
    /// Anywhere, attached (a `concurrent.futures.Future` is thread-safe).
    Anywhere(Job),
}

impl Canceller {
    fn cancel(self) {
        // Failures mean there is nothing left to cancel (a closed loop, a finished run).
        match self {
            Canceller::OnLoop(home, job) => home.run(job),
            Canceller::Anywhere(job) => {
                attach_unless_exiting(|py| drop(job(py)));
            }
        }
    }
}

impl TaskSlot {
    /// Records how to cancel the Python side; cancels it at once if Rust already asked.
    pub(crate) fn attach(&self, canceller: Canceller) {
        let canceller = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if !state.cancel_requested {
                state.canceller = Some(canceller);
                return;
            }
            canceller
        };
        canceller.cancel();
    }

    /// Cancels the Python side, now or as soon as it is attached. Any thread; never waits
    /// for the interpreter for a loop's work (the loop's home takes the job).
    pub(crate) fn cancel(&self) {
        let canceller = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.cancel_requested = true;
            state.canceller.take()
        };
        if let Some(canceller) = canceller {
            canceller.cancel();
        }
    }

    pub(crate) fn cancel_requested(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cancel_requested
    }
}

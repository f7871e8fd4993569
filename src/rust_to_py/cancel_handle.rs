//! Letting a future see the cancellation of its Python task and clean up before it ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use event_listener::Event;
use pyo3::prelude::*;

/// Tells a future that its Python task was cancelled, and with which exception.
///
/// Without a handle, cancelling the task (asyncio `Task.cancel`, a trio or anyio cancel scope)
/// drops the Rust future at once and re-raises the cancellation. A coroutine created with
/// [`Coroutine::with_cancel_handle`](crate::Coroutine::with_cancel_handle) is not dropped:
/// the exception is handed to the handle, the future keeps being polled, and it finishes in its
/// own time — typically by running asynchronous cleanup and then returning the exception, so
/// that the cancellation goes on up the Python stack (anyio recognises its own cancellations by
/// the very exception object, so return that one rather than a new `CancelledError`).
///
/// Further cancellations while the future cleans up (anyio repeats them every loop pass) are
/// absorbed: the first exception is the one reported.
///
/// ```
/// use pyo3::prelude::*;
/// use pyo3_async::{CancelHandle, Coroutine};
///
/// async fn work() -> PyResult<u32> {
///     std::future::pending().await
/// }
///
/// async fn flush_buffers() {}
///
/// let coroutine = Coroutine::with_cancel_handle(|cancel: CancelHandle| async move {
///     futures::select_biased! {
///         cancelled = futures::FutureExt::fuse(cancel.cancelled()) => {
///             flush_buffers().await;
///             Err(cancelled)
///         }
///         done = futures::FutureExt::fuse(work()) => done,
///     }
/// });
/// # drop(coroutine);
/// ```
pub struct CancelHandle {
    shared: Arc<Cancellation>,
}

/// The state a [`CancelHandle`] shares with its coroutine.
#[derive(Default)]
pub(crate) struct Cancellation {
    cancelled: AtomicBool,
    exception: Mutex<Option<PyErr>>,
    event: Event,
}

impl Cancellation {
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    pub(crate) fn handle(self: &Arc<Self>) -> CancelHandle {
        CancelHandle {
            shared: Arc::clone(self),
        }
    }

    /// Records the exception thrown into the coroutine (the first one wins) and wakes whoever
    /// waits in [`CancelHandle::cancelled`].
    pub(crate) fn deliver(&self, exception: PyErr) {
        {
            let mut slot = self
                .exception
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if slot.is_none() {
                *slot = Some(exception);
            }
        }
        self.cancelled.store(true, Ordering::Release);
        self.event.notify(usize::MAX);
    }

    fn exception(&self) -> Option<PyErr> {
        // Interpreter first, then the lock, as in `deliver` (which runs attached): no thread
        // ever waits for the interpreter while holding the lock.
        crate::exit_guard::attach_unless_exiting(|py| {
            let slot = self
                .exception
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            slot.as_ref().map(|exception| exception.clone_ref(py))
        })
        .unwrap_or_else(|| {
            Some(pyo3::exceptions::PyRuntimeError::new_err(
                "cancelled: the Python interpreter is shutting down",
            ))
        })
    }
}

impl CancelHandle {
    /// Whether the Python task has been cancelled.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::Coroutine;
    ///
    /// let coroutine = Coroutine::with_cancel_handle(|cancel| async move {
    ///     PyResult::Ok(cancel.is_cancelled())
    /// });
    /// # drop(coroutine);
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.shared.cancelled.load(Ordering::Acquire)
    }

    /// Waits for the cancellation and returns the exception that carried it.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::Coroutine;
    ///
    /// let coroutine = Coroutine::with_cancel_handle(|cancel| async move {
    ///     let exception = cancel.cancelled().await;
    ///     PyResult::<()>::Err(exception)
    /// });
    /// # drop(coroutine);
    /// ```
    pub async fn cancelled(&self) -> PyErr {
        loop {
            if self.is_cancelled() {
                if let Some(exception) = self.shared.exception() {
                    return exception;
                }
            }
            let listener = self.shared.event.listen();
            if self.is_cancelled() {
                continue;
            }
            listener.await;
        }
    }
}

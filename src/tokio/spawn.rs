//! Tasks on tokio's workers, tied to the Python side that awaits them: the handle aborts the
//! task when dropped, so cancelling the awaiting coroutine stops the task too.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::tokio::runtime::Handle;
use pyo3::PyResult;

use crate::rust_to_py::panic::panic_exception;
use crate::tokio::runtime::{handle, AsHandle};

pyo3::create_exception!(
    pyo3_async,
    TaskAbortedError,
    pyo3::exceptions::PyException,
    "A tokio task awaited from Python was aborted by something other than its awaiter: \
     `JoinHandle::abort`, or the runtime shutting down.\n\n\
     Not a cancellation: the awaiting task was not cancelled, so neither asyncio's \
     `CancelledError` nor trio's `Cancelled` would be true, and either would confuse the \
     loop's cancellation bookkeeping (asyncio's `uncancel` counts, trio's cancel scopes)."
);

/// Runs `future` as a task on the process-wide runtime's workers. Unlike tokio's own handle,
/// the returned [`JoinHandle`] aborts the task when it is dropped: cancelling the Python side
/// that awaits it stops the task too.
///
/// ```
/// #[pyo3_async::pyfunction]
/// async fn checksum(data: Vec<u8>) -> pyo3::PyResult<u64> {
///     // CPU-heavy: on tokio's workers, not on the Python loop's thread.
///     pyo3_async::tokio::spawn(async move { data.iter().map(|&b| u64::from(b)).sum() }).await
/// }
/// # fn main() {}
/// ```
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_on(handle(), future)
}

/// [`spawn`] on a runtime of your choice (a [`Handle`], a `Runtime`, or a reference to
/// either): a library with an I/O runtime and a compute runtime says which one runs the task.
///
/// ```
/// use std::sync::OnceLock;
///
/// use tokio::runtime::Runtime;
///
/// fn compute() -> &'static Runtime {
///     static COMPUTE: OnceLock<Runtime> = OnceLock::new();
///     COMPUTE.get_or_init(|| Runtime::new().expect("a runtime"))
/// }
///
/// #[pyo3_async::pyfunction]
/// async fn checksum(data: Vec<u8>) -> pyo3::PyResult<u64> {
///     pyo3_async::tokio::spawn_on(compute(), async move {
///         data.iter().map(|&b| u64::from(b)).sum()
///     })
///     .await
/// }
/// # fn main() {}
/// ```
pub fn spawn_on<F>(runtime: impl AsHandle, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime: &Handle = runtime.as_handle();
    JoinHandle {
        task: runtime.spawn(future),
    }
}

/// A task on a tokio runtime, aborted when dropped. Resolves with the task's output; a panic
/// of the task becomes a [`PanicError`](crate::PanicError), an abort by anyone else a
/// [`TaskAbortedError`].
#[must_use = "dropping the handle aborts the task"]
pub struct JoinHandle<T> {
    task: ::tokio::task::JoinHandle<T>,
}

impl<T> JoinHandle<T> {
    /// Aborts the task now (dropping the handle does too); awaiting the handle then raises
    /// [`TaskAbortedError`].
    pub fn abort(&self) {
        self.task.abort();
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = PyResult<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<PyResult<T>> {
        Pin::new(&mut self.task).poll(cx).map(|joined| {
            joined.map_err(|err| {
                if err.is_panic() {
                    panic_exception(err.into_panic())
                } else {
                    TaskAbortedError::new_err("the tokio task was aborted")
                }
            })
        })
    }
}

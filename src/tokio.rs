//! tokio, for futures that need its reactor: `tokio::time`, `tokio::net`, and everything built
//! on them (reqwest, tonic, sqlx). Feature `tokio`.
//!
//! A tokio timer or socket registers with the driver of the runtime whose *context* is entered
//! when it is first polled; outside any runtime it panics ("there is no reactor running").
//! [`in_runtime`] polls a future inside the context of one process-wide runtime, so the
//! Python event loop keeps driving it — no spawn, no thread hop — while tokio's driver, on the
//! runtime's own threads, fires its timers and I/O and wakes it. Cancelling the Python side
//! drops the future and everything it owns, as for any other future.
//!
//! `#[pyo3_async::pyfunction(tokio)]` (and `#[pyo3_async(tokio)]` on a method) does this for
//! one function; the `tokio-default` feature does it for every exported async function and
//! generator of the program. For work that must run on tokio's worker threads (CPU-heavy
//! steps, `!Unpin` giants you would rather not poll on the loop's thread), [`spawn`] returns a
//! handle that aborts the task when dropped, so cancellation still reaches it.
//!
//! The runtime is built on first use (multi-threaded, all drivers enabled), unless
//! [`init`] or [`init_with_handle`] chose it before. Its driver must run on threads of its
//! own: a multi-thread runtime does that; a current-thread runtime given to
//! [`init_with_handle`] must be kept running by a thread (`block_on`) of yours.
//!
//! Its threads keep no Python thread state: each `Python::attach` of a task gets a fresh one,
//! so nothing a task leaves there (`threading.local` values, `contextvars` it set) reaches the
//! next task on that worker. A runtime of your own whose tasks keep no such state can have its
//! threads keep one ([`keep_thread_state`](crate::keep_thread_state), hooks shown at
//! [`init`]): attaching then only takes the interpreter, which takes a third off the round
//! trip of [`EventLoop::spawn`](crate::EventLoop::spawn) from a task.
//!
//! **smol needs none of this**: its reactor (`async-io`) is global and runs on a thread of its
//! own, so `smol::Timer` and `smol::net` work in any exported future as they are.
//!
//! ```
//! use std::time::Duration;
//!
//! // The function a Python program awaits: a tokio timer, driven by the Python loop.
//! #[pyo3_async::pyfunction(tokio)]
//! async fn nap(seconds: f64) -> f64 {
//!     tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
//!     seconds
//! }
//! # fn main() {}
//! ```

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use ::tokio::runtime::{Builder, Handle, Runtime};
use futures::Stream;
use pin_project_lite::pin_project;
use pyo3::exceptions::asyncio::CancelledError;
use pyo3::PyResult;

use crate::rust_to_py::panic::panic_exception;

/// The process-wide runtime: one the crate built (and owns), or a handle of the user's.
enum Chosen {
    Owned(Runtime),
    Handle(Handle),
}

static RUNTIME: OnceLock<Chosen> = OnceLock::new();

/// The runtime was chosen already (by an earlier `init`, or by first use).
#[derive(Debug)]
pub struct AlreadyInitialized;

impl std::fmt::Display for AlreadyInitialized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the pyo3-async tokio runtime is already initialised")
    }
}

impl std::error::Error for AlreadyInitialized {}

/// Builds the process-wide runtime from `builder`, before its first use.
///
/// The builder is used as it is: tokio keeps one hook of each kind, so none is added. The
/// thread-state hooks below make attaching on its threads cheap, for tasks that store nothing
/// in their Python thread state (see [`keep_thread_state`](crate::keep_thread_state) for what a
/// kept state keeps from one task to the next).
///
/// ```
/// let mut builder = tokio::runtime::Builder::new_multi_thread();
/// builder
///     .worker_threads(2)
///     .enable_all()
///     .on_thread_start(pyo3_async::keep_thread_state)
///     .on_thread_unpark(pyo3_async::keep_thread_state)
///     .on_thread_stop(pyo3_async::release_thread_state);
/// pyo3_async::tokio::init(builder).unwrap();
/// assert!(pyo3_async::tokio::init(tokio::runtime::Builder::new_multi_thread()).is_err());
/// ```
pub fn init(mut builder: Builder) -> Result<(), AlreadyInitialized> {
    let mut result = Err(AlreadyInitialized);
    RUNTIME.get_or_init(|| {
        result = Ok(());
        Chosen::Owned(builder.build().expect("building the tokio runtime"))
    });
    result
}

/// Uses a runtime of your own (its [`Handle`]) as the process-wide one, before first use.
///
/// ```
/// let runtime = tokio::runtime::Runtime::new().unwrap();
/// pyo3_async::tokio::init_with_handle(runtime.handle().clone()).unwrap();
/// # std::mem::forget(runtime); // it must outlive every future polled in it
/// ```
pub fn init_with_handle(handle: Handle) -> Result<(), AlreadyInitialized> {
    let mut result = Err(AlreadyInitialized);
    RUNTIME.get_or_init(|| {
        result = Ok(());
        Chosen::Handle(handle)
    });
    result
}

/// The process-wide runtime's handle; builds the default runtime on first use.
///
/// # Panics
/// If the default runtime cannot be built (the system refuses its threads or its driver).
///
/// ```
/// let answer = pyo3_async::tokio::handle().block_on(async { 42 });
/// assert_eq!(answer, 42);
/// ```
pub fn handle() -> &'static Handle {
    let chosen = RUNTIME.get_or_init(|| {
        let runtime = Builder::new_multi_thread()
            .enable_all()
            .thread_name("pyo3-async-tokio")
            .build()
            .expect("building the tokio runtime");
        Chosen::Owned(runtime)
    });
    match chosen {
        Chosen::Owned(runtime) => runtime.handle(),
        Chosen::Handle(handle) => handle,
    }
}

pin_project! {
    /// A future or stream polled — and dropped — inside the process-wide runtime's context:
    /// see [`in_runtime`].
    #[must_use = "futures do nothing unless polled"]
    pub struct InRuntime<F> {
        // Dropped by hand, in `PinnedDrop`, inside the runtime's context.
        #[pin]
        inner: ManuallyDrop<F>,
    }

    impl<F> PinnedDrop for InRuntime<F> {
        /// A future cancelled from Python is dropped on the loop's thread, outside any
        /// runtime: destructors that spawn their cleanup on tokio (a pooled connection that
        /// returns itself, a guard that closes a stream) would panic there and the cleanup
        /// would never run. They run inside the runtime's context, as the polls did.
        fn drop(this: Pin<&mut Self>) {
            // A future never polled never chose a runtime: none is built just to drop it.
            let _context = RUNTIME.get().map(|_| handle().enter());
            // SAFETY: `inner` is dropped in place, exactly once (this is the wrapper's drop),
            // and never touched again; dropping pinned data in place keeps the pin contract.
            unsafe { ManuallyDrop::drop(this.project().inner.get_unchecked_mut()) };
        }
    }
}

/// Polls `inner` (a future or a stream) inside the process-wide runtime's context, wherever it
/// is polled: tokio timers and I/O work, driven by the runtime's threads, while a Python
/// event loop (or any executor) drives `inner`.
///
/// ```
/// use std::time::Duration;
///
/// use pyo3_async::Coroutine;
///
/// // What `#[pyo3_async::pyfunction(tokio)]` builds, by hand.
/// fn nap() -> Coroutine {
///     Coroutine::new(pyo3_async::tokio::in_runtime(async {
///         tokio::time::sleep(Duration::from_millis(1)).await;
///         Ok(())
///     }))
/// }
/// # let _ = nap;
/// ```
pub fn in_runtime<F>(inner: F) -> InRuntime<F> {
    InRuntime {
        inner: ManuallyDrop::new(inner),
    }
}

/// `Pin<&mut ManuallyDrop<F>>` to `Pin<&mut F>`: `ManuallyDrop` is a transparent wrapper.
fn pinned<F>(inner: Pin<&mut ManuallyDrop<F>>) -> Pin<&mut F> {
    // SAFETY: `ManuallyDrop<F>` has `F`'s layout and never moves its content; the pin is
    // passed through unchanged.
    unsafe { inner.map_unchecked_mut(|inner| &mut **inner) }
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _context = handle().enter();
        pinned(self.project().inner).poll(cx)
    }
}

impl<S: Stream> Stream for InRuntime<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let _context = handle().enter();
        pinned(self.project().inner).poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

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
    JoinHandle {
        task: handle().spawn(future),
    }
}

/// A task of the process-wide runtime, aborted when dropped. Resolves with the task's output;
/// a panic of the task becomes a [`PanicError`](crate::PanicError), an abort by anyone else a
/// `CancelledError`.
#[must_use = "dropping the handle aborts the task"]
pub struct JoinHandle<T> {
    task: ::tokio::task::JoinHandle<T>,
}

impl<T> JoinHandle<T> {
    /// Aborts the task now (dropping the handle does too).
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
                    CancelledError::new_err("the tokio task was aborted")
                }
            })
        })
    }
}

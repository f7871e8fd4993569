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
//! [`init_with_handle`] must be kept running by a thread (`block_on`) of yours. A library
//! with runtimes of its own names one per call: [`in_runtime_of`], [`spawn_on`], and
//! `#[pyo3_async::pyfunction(tokio = path::to_runtime)]`. The runtime the crate owns is shut
//! down at exit, and a forked child gets a runtime of its own: see [`set_shutdown_timeout`]
//! and the table in `runtime.rs`.
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

mod runtime;
mod spawn;

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::tokio::runtime::Handle;
use futures::Stream;
use pin_project_lite::pin_project;

pub use runtime::{handle, init, init_with_handle, set_shutdown_timeout, AsHandle, InitError};
pub use spawn::{spawn, spawn_on, JoinHandle, TaskAbortedError};

pin_project! {
    /// A future or stream polled — and dropped — inside the process-wide runtime's context:
    /// see [`in_runtime`].
    #[must_use = "futures do nothing unless polled"]
    pub struct InRuntime<F> {
        // Dropped by hand, in `PinnedDrop`, inside the runtime's context.
        #[pin]
        inner: ManuallyDrop<F>,
        // `None`: the process-wide runtime.
        runtime: Option<Handle>,
    }

    impl<F> PinnedDrop for InRuntime<F> {
        /// A future cancelled from Python is dropped on the loop's thread, outside any
        /// runtime: destructors that spawn their cleanup on tokio (a pooled connection that
        /// returns itself, a guard that closes a stream) would panic there and the cleanup
        /// would never run. They run inside the runtime's context, as the polls did.
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // A future never polled never chose a runtime: none is built just to drop it.
            let _context = match this.runtime {
                Some(runtime) => Some(runtime.enter()),
                None => runtime::chosen().then(|| handle().enter()),
            };
            // SAFETY: `inner` is dropped in place, exactly once (this is the wrapper's drop),
            // and never touched again; dropping pinned data in place keeps the pin contract.
            unsafe { ManuallyDrop::drop(this.inner.get_unchecked_mut()) };
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
        runtime: None,
    }
}

/// [`in_runtime`] with a runtime of your choice (a [`Handle`], a `Runtime`, or a reference to
/// either) instead of the process-wide one.
///
/// ```
/// use std::sync::OnceLock;
/// use std::time::Duration;
///
/// use tokio::runtime::Runtime;
///
/// /// The library's I/O runtime.
/// fn io() -> &'static Runtime {
///     static IO: OnceLock<Runtime> = OnceLock::new();
///     IO.get_or_init(|| Runtime::new().expect("a runtime"))
/// }
///
/// // The option names the function; it is called when the coroutine is created.
/// #[pyo3_async::pyfunction(tokio = io)]
/// async fn nap() {
///     tokio::time::sleep(Duration::from_millis(1)).await;
/// }
///
/// // By hand: the same.
/// let nap_too = pyo3_async::Coroutine::new(pyo3_async::tokio::in_runtime_of(io(), async {
///     tokio::time::sleep(Duration::from_millis(1)).await;
///     Ok(())
/// }));
/// # drop(nap_too);
/// # fn main() {}
/// ```
pub fn in_runtime_of<F>(runtime: impl AsHandle, inner: F) -> InRuntime<F> {
    InRuntime {
        inner: ManuallyDrop::new(inner),
        runtime: Some(runtime.as_handle().clone()),
    }
}

impl<F> InRuntime<F> {
    /// The runtime this is polled in.
    fn handle(&self) -> &Handle {
        self.runtime.as_ref().unwrap_or_else(|| handle())
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
        let _context = self.handle().enter();
        pinned(self.project().inner).poll(cx)
    }
}

impl<S: Stream> Stream for InRuntime<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let _context = self.handle().enter();
        pinned(self.project().inner).poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

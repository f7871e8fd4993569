//! Polling a future or stream with the interpreter released.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use pyo3::prelude::*;

use crate::exit_guard::thread_is_attached;

/// Polls the wrapped future or stream detached from the Python interpreter, so that other
/// Python threads run while a poll does blocking or CPU-heavy work.
///
/// Each poll re-attaches afterwards, which is cheap on the loop thread that drives a
/// [`Coroutine`](crate::Coroutine) or [`AsyncGenerator`](crate::AsyncGenerator); polled on a
/// thread that is not attached (a Rust executor's), it simply polls. The wrapped future must
/// not touch Python objects during a poll without attaching itself.
///
/// ```
/// use pyo3::prelude::*;
/// use pyo3_async::{AllowThreads, Coroutine};
///
/// #[pyfunction]
/// fn checksum(data: Vec<u8>) -> Coroutine {
///     Coroutine::new(AllowThreads::new(async move {
///         // Other Python threads keep running meanwhile.
///         PyResult::Ok(data.iter().map(|&byte| u64::from(byte)).sum::<u64>())
///     }))
/// }
/// ```
#[derive(Debug, Clone, Copy, Default)]
#[must_use = "futures and streams do nothing unless polled"]
pub struct AllowThreads<F> {
    inner: F,
}

impl<F> AllowThreads<F> {
    /// Wraps a future or a stream.
    ///
    /// ```
    /// use pyo3_async::AllowThreads;
    ///
    /// let future = AllowThreads::new(async { 1 + 1 });
    /// # drop(future);
    /// ```
    pub fn new(inner: F) -> Self {
        AllowThreads { inner }
    }

    /// Unwraps the future or stream.
    ///
    /// ```
    /// use pyo3_async::AllowThreads;
    ///
    /// let stream = AllowThreads::new(futures::stream::iter([1, 2, 3])).into_inner();
    /// # drop(stream);
    /// ```
    pub fn into_inner(self) -> F {
        self.inner
    }

    fn inner(self: Pin<&mut Self>) -> Pin<&mut F> {
        // SAFETY: `inner` is structurally pinned: it is never moved out of a pinned
        // `AllowThreads` (`into_inner` takes `self` by value, which requires `Unpin` once
        // pinned), there is no `Drop` impl, and `AllowThreads` is `Unpin` only when `F` is.
        unsafe { self.map_unchecked_mut(|this| &mut this.inner) }
    }
}

impl<F> Future for AllowThreads<F>
where
    F: Future + Send,
    F::Output: Send,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let inner = self.inner();
        if !may_be_attached() {
            // Nothing to release (a Rust executor's thread): never take the interpreter.
            return inner.poll(cx);
        }
        let waker = cx.waker();
        Python::attach(|py| py.detach(|| inner.poll(&mut Context::from_waker(waker))))
    }
}

impl<S> Stream for AllowThreads<S>
where
    S: Stream + Send,
    S::Item: Send,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let inner = self.inner();
        if !may_be_attached() {
            return inner.poll_next(cx);
        }
        let waker = cx.waker();
        Python::attach(|py| py.detach(|| inner.poll_next(&mut Context::from_waker(waker))))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// Whether this thread may hold the interpreter, which the poll then releases. The limited
/// API cannot tell: there, every poll attaches (a no-op on the Python loop that drives it; a
/// wait for the interpreter on a Rust executor's thread) and releases.
fn may_be_attached() -> bool {
    cfg!(Py_LIMITED_API) || thread_is_attached()
}

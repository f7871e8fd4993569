//! `!Send` futures inside `Send` coroutines: polled and dropped on their own thread only.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::{self, ThreadId};

use pyo3::exceptions::PyRuntimeError;
use pyo3::PyResult;

/// (Public for the macros' `local` option, through `__private`; [`Coroutine::local`](crate::Coroutine::local) is the API.)
///
/// A future that may not leave the thread that made it, made `Send` by never touching it
/// anywhere else.
///
/// A Python coroutine object is shared between threads at Python's will: any thread may
/// resume it or drop the last reference. Polled on another thread, a `ThreadBound` returns a
/// `RuntimeError` without touching the future; dropped on another thread, it leaks the future
/// rather than run its destructor there.
pub struct ThreadBound<F> {
    thread: ThreadId,
    future: ManuallyDrop<F>,
}

// SAFETY: `future` is only ever used on `thread`, the thread that created it: `poll` checks the
// current thread before touching it, and `drop` forgets it anywhere else. Moving the wrapper
// between threads moves nothing but bytes that no one reads there.
unsafe impl<F> Send for ThreadBound<F> {}

impl<F> ThreadBound<F> {
    pub fn new(future: F) -> Self {
        ThreadBound {
            thread: thread::current().id(),
            future: ManuallyDrop::new(future),
        }
    }

    fn is_home(&self) -> bool {
        thread::current().id() == self.thread
    }
}

impl<F, T> Future for ThreadBound<F>
where
    F: Future<Output = PyResult<T>>,
{
    type Output = PyResult<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.is_home() {
            return Poll::Ready(Err(PyRuntimeError::new_err(format!(
                "this coroutine runs a Rust future that is not Send: it can only be awaited on \
                 the thread that created it ({:?}), not on {:?}",
                self.thread,
                thread::current().id(),
            ))));
        }
        // SAFETY: a structural pin projection: `future` is never moved out of a pinned
        // `ThreadBound` (`drop` drops it in place), and `ThreadBound` has no `Unpin` impl of
        // its own that would let it move.
        let future = unsafe { self.map_unchecked_mut(|bound| &mut *bound.future) };
        future.poll(cx)
    }
}

impl<F> Drop for ThreadBound<F> {
    fn drop(&mut self) {
        if self.is_home() {
            // SAFETY: dropped once, here, in place (it may be pinned); never used again.
            unsafe { ManuallyDrop::drop(&mut self.future) }
        }
        // Elsewhere the future leaks: running its destructor on a thread it cannot be sent
        // to would be unsound (an `Rc` it holds may be shared with its own thread).
    }
}

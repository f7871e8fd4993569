//! Type-erased futures and streams whose outputs become Python objects as they are produced,
//! while the interpreter is attached: no second lock or hop is needed for the conversion.

use std::any::TypeId;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

/// What a poll produces: the Python object, or the error, boxed.
///
/// `PyErr` is 64 bytes, and the outcome of every step crosses several layers on its way out
/// (the type-erased call, `catch_unwind`, the waker's report, the driver). As
/// `Poll<PyResult<_>>` (72 bytes) each layer copied it through memory, and the copies
/// stalled: a load of 16 bytes cannot be forwarded from the two stores of 8 that wrote them,
/// and that cost a ready step on 3.11 several nanoseconds per layer. `Poll<PyOutcome>` is
/// 16 bytes and travels in two registers; the box is made only when the future fails.
pub(crate) type PyOutcome = Result<Py<PyAny>, Box<PyErr>>;

/// A future polled with the interpreter attached, producing a Python object.
pub(crate) trait PyPoll: Send {
    fn poll_py(self: Pin<&mut Self>, py: Python<'_>, cx: &mut Context<'_>) -> Poll<PyOutcome>;
}

/// A stream polled with the interpreter attached, producing Python objects.
pub(crate) trait PyPollNext: Send {
    fn poll_next_py(
        self: Pin<&mut Self>,
        py: Python<'_>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<PyOutcome>>;
}

/// Adapts a `Future<Output = PyResult<T>>` to [`PyPoll`].
pub(crate) struct IntoPyFuture<F>(pub(crate) F);

impl<F, T> PyPoll for IntoPyFuture<F>
where
    F: Future<Output = PyResult<T>> + Send,
    T: for<'py> IntoPyObject<'py> + 'static,
{
    fn poll_py(self: Pin<&mut Self>, py: Python<'_>, cx: &mut Context<'_>) -> Poll<PyOutcome> {
        // SAFETY: the field is structurally pinned: `IntoPyFuture` never moves it out of a
        // pinned `self`, has no `Drop` impl, and is `Unpin` only when `F` is.
        let future = unsafe { self.map_unchecked_mut(|this| &mut this.0) };
        future.poll(cx).map(|output| into_outcome(py, output))
    }
}

/// Adapts a `Stream<Item = PyResult<T>>` to [`PyPollNext`].
pub(crate) struct IntoPyStream<S>(pub(crate) S);

impl<S, T> PyPollNext for IntoPyStream<S>
where
    S: Stream<Item = PyResult<T>> + Send,
    T: for<'py> IntoPyObject<'py> + 'static,
{
    fn poll_next_py(
        self: Pin<&mut Self>,
        py: Python<'_>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<PyOutcome>> {
        // SAFETY: as for `IntoPyFuture`, the field is structurally pinned.
        let stream = unsafe { self.map_unchecked_mut(|this| &mut this.0) };
        stream
            .poll_next(cx)
            .map(|item| item.map(|item| into_outcome(py, item)))
    }
}

/// A future's output or a stream's item, converted.
#[inline]
fn into_outcome<T>(py: Python<'_>, output: PyResult<T>) -> PyOutcome
where
    T: for<'py> IntoPyObject<'py> + 'static,
{
    output
        .and_then(|value| into_python(py, value))
        .map_err(Box::new)
}

/// Converts an output, mapping `()` to `None` as a Python function returning nothing does
/// (`()` alone would become an empty tuple). The check is resolved at compile time.
fn into_python<T>(py: Python<'_>, value: T) -> PyResult<Py<PyAny>>
where
    T: for<'py> IntoPyObject<'py> + 'static,
{
    if TypeId::of::<T>() == TypeId::of::<()>() {
        return Ok(py.None());
    }
    value.into_py_any(py)
}

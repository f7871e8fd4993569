//! Type-erased futures and streams whose outputs become Python objects as they are produced,
//! while the interpreter is attached: no second lock or hop is needed for the conversion.

use std::any::TypeId;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

/// A future polled with the interpreter attached, producing a Python object.
pub(crate) trait PyPoll: Send {
    fn poll_py(
        self: Pin<&mut Self>,
        py: Python<'_>,
        cx: &mut Context<'_>,
    ) -> Poll<PyResult<Py<PyAny>>>;
}

/// A stream polled with the interpreter attached, producing Python objects.
pub(crate) trait PyPollNext: Send {
    fn poll_next_py(
        self: Pin<&mut Self>,
        py: Python<'_>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<PyResult<Py<PyAny>>>>;
}

/// Adapts a `Future<Output = PyResult<T>>` to [`PyPoll`].
pub(crate) struct IntoPyFuture<F>(pub(crate) F);

impl<F, T> PyPoll for IntoPyFuture<F>
where
    F: Future<Output = PyResult<T>> + Send,
    T: for<'py> IntoPyObject<'py> + 'static,
{
    fn poll_py(
        self: Pin<&mut Self>,
        py: Python<'_>,
        cx: &mut Context<'_>,
    ) -> Poll<PyResult<Py<PyAny>>> {
        // SAFETY: the field is structurally pinned: `IntoPyFuture` never moves it out of a
        // pinned `self`, has no `Drop` impl, and is `Unpin` only when `F` is.
        let future = unsafe { self.map_unchecked_mut(|this| &mut this.0) };
        future
            .poll(cx)
            .map(|output| output.and_then(|value| into_python(py, value)))
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
    ) -> Poll<Option<PyResult<Py<PyAny>>>> {
        // SAFETY: as for `IntoPyFuture`, the field is structurally pinned.
        let stream = unsafe { self.map_unchecked_mut(|this| &mut this.0) };
        stream
            .poll_next(cx)
            .map(|item| item.map(|item| item.and_then(|value| into_python(py, value))))
    }
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

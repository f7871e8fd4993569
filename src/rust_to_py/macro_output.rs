//! How the attribute macros turn a body's output into what Python gets, decided by the
//! output's *type*, not by how the user spelled it.
//!
//! A body may return a plain value (`i64`, a `#[pyclass]` that happens to be named `Result`)
//! or a result (`PyResult<T>`, `Result<T, E>`, or an alias such as
//! `type ApiResult<T> = Result<T, ApiError>`). The macro sees only tokens, and a name is not a
//! type: so it emits `borrowed.__pyo3_async_output_kind()` (with `borrowed = &output`), and method resolution picks the kind. The method's name is one no user type has, so that
//! no method of the output's own (an `output_kind` of a `#[pyclass]`) is picked instead.
//! [`IsResult`] is implemented for `Result<T, E>` itself and matches the receiver `&Result`
//! at once; [`IsValue`] is implemented for every `&T` and is reached only by one more auto-ref,
//! that is, when the first does not apply. This works because the macros refuse generic
//! functions: the output's type is always concrete where the call is resolved.

use futures::stream::{self, Stream};
use futures::{future, StreamExt};
use pyo3::{PyErr, PyResult};

/// The output is a `Result`: its error converts into a `PyErr` (`E: Into<PyErr>`).
pub struct ResultOutput;

/// The output is a plain value, returned as is.
pub struct ValueOutput;

/// Picked for `Result<T, E>` (see the module's docs).
pub trait IsResult {
    fn __pyo3_async_output_kind(&self) -> ResultOutput {
        ResultOutput
    }
}

impl<T, E> IsResult for Result<T, E> {}

/// Picked for anything else, one auto-ref later.
pub trait IsValue {
    fn __pyo3_async_output_kind(&self) -> ValueOutput {
        ValueOutput
    }
}

impl<T: ?Sized> IsValue for &T {}

impl ResultOutput {
    /// A coroutine's result.
    pub fn into_py_result<T, E: Into<PyErr>>(self, output: Result<T, E>) -> PyResult<T> {
        output.map_err(Into::into)
    }

    /// A generator body that may fail before it has a stream: the failure is raised by the
    /// first `__anext__`, as a Python async generator raises before its first `yield`.
    pub fn into_stream<S, T, E>(self, output: Result<S, E>) -> impl Stream<Item = PyResult<T>>
    where
        S: Stream<Item = PyResult<T>>,
        E: Into<PyErr>,
    {
        match output {
            Ok(items) => future::Either::Left(items),
            Err(err) => future::Either::Right(stream::once(future::ready(Err(err.into())))),
        }
    }

    /// A test or `main` body: its value is dropped.
    pub fn into_unit_result<T, E: Into<PyErr>>(self, output: Result<T, E>) -> PyResult<()> {
        output.map(drop).map_err(Into::into)
    }
}

impl ValueOutput {
    /// A coroutine's result.
    pub fn into_py_result<T>(self, output: T) -> PyResult<T> {
        Ok(output)
    }

    /// A generator body's stream, as it is.
    pub fn into_stream<S: Stream>(self, output: S) -> S {
        output
    }

    /// A test or `main` body returns `()` or a result, as `#[test]` functions do.
    pub fn into_unit_result(self, output: ()) -> PyResult<()> {
        Ok(output)
    }
}

/// The stream of a generator body: the body's future, then the items of the stream it returns.
pub fn flatten_stream<F, S>(future: F) -> impl Stream<Item = S::Item>
where
    F: std::future::Future<Output = S>,
    S: Stream,
{
    stream::once(future).flatten()
}

/// What the expansions import, by a glob: only the two traits, so that the import is always
/// used (one of them picks the kind) and needs no `allow` (which a `forbid` would refuse).
pub mod kinds {
    pub use super::{IsResult, IsValue};
}

#[cfg(test)]
mod tests {
    use super::kinds::*;
    use futures::executor::block_on_stream;
    use pyo3::exceptions::PyValueError;
    use pyo3::PyResult;

    /// As the expansions ask: through a variable holding the borrow.
    macro_rules! kind_of {
        ($borrowed:expr) => {{
            let borrowed = $borrowed;
            borrowed.__pyo3_async_output_kind()
        }};
    }

    /// A type named `Result` that is not one.
    struct Result;

    struct ApiError;

    impl From<ApiError> for pyo3::PyErr {
        fn from(_: ApiError) -> Self {
            PyValueError::new_err("api")
        }
    }

    /// A result under another name.
    type ApiResult<T> = std::result::Result<T, ApiError>;

    #[test]
    fn the_kind_comes_from_the_type_not_the_name() {
        let value = Result;
        assert!(kind_of!(&value).into_py_result(value).is_ok());
        let aliased: ApiResult<i64> = Err(ApiError);
        assert!(kind_of!(&aliased).into_py_result(aliased).is_err());
        let number = 3_i64;
        assert_eq!(kind_of!(&number).into_py_result(number).ok(), Some(3));
        let failed: PyResult<i64> = Err(PyValueError::new_err("no"));
        assert!(kind_of!(&failed).into_py_result(failed).is_err());
    }

    #[test]
    fn a_failed_generator_body_yields_its_error_first() {
        let failed: PyResult<futures::stream::Iter<std::vec::IntoIter<PyResult<i64>>>> =
            Err(PyValueError::new_err("no stream"));
        let items: Vec<_> = block_on_stream(kind_of!(&failed).into_stream(failed)).collect();
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
        let ok: PyResult<_> = Ok(futures::stream::iter(vec![Ok::<_, pyo3::PyErr>(1), Ok(2)]));
        let items: Vec<_> = block_on_stream(kind_of!(&ok).into_stream(ok)).collect();
        assert_eq!(items.len(), 2);
    }
}

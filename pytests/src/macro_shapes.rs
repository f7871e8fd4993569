//! The shapes real bindings give the attribute macros (test_macro_shapes.py): attributes that
//! belong to the body, results under other names, PyO3 under another path, modules without the
//! implicit prelude, PyO3's declarative modules, owned `self`.

use pyo3::exceptions::PyLookupError;
use pyo3::prelude::*;

use crate::coroutines::suspend_once;
use crate::spans::current_span;

// ---- Attributes that belong to the body: `tracing::instrument` ----

/// Which span the body is in, before and after a suspension.
#[pyo3_async::pyfunction]
#[tracing::instrument(name = "traced_body")]
async fn traced(value: i64) -> (Option<&'static str>, Option<&'static str>, i64) {
    let before = current_span();
    suspend_once().await;
    (before, current_span(), value)
}

/// Without a `name`, the span is named after the function, as on any `async fn`.
#[pyo3_async::pyfunction]
#[tracing::instrument]
async fn traced_plain(mut value: i64) -> Option<&'static str> {
    value += 1;
    let _ = value;
    suspend_once().await;
    current_span()
}

// ---- Results under other names, and a class named `Result` ----

struct ApiError(String);

impl From<ApiError> for PyErr {
    fn from(error: ApiError) -> Self {
        PyLookupError::new_err(error.0)
    }
}

/// A result by another name: converted as a result, from its type.
type ApiResult<T> = std::result::Result<T, ApiError>;

#[pyo3_async::pyfunction]
async fn lookup(key: String) -> ApiResult<i64> {
    suspend_once().await;
    match key.as_str() {
        "one" => Ok(1),
        _ => Err(ApiError(key)),
    }
}

mod shadowing {
    use pyo3::prelude::*;

    /// A class named `Result`, which is no result: returned as a value.
    #[pyclass(frozen, name = "MacroResult")]
    pub(crate) struct Result {
        #[pyo3(get)]
        value: i64,
    }

    #[pyo3_async::pyfunction]
    pub(crate) async fn make_result(value: i64) -> Result {
        Result { value }
    }
}

/// A generator body that fails before it has a stream: raised by the first `__anext__`.
#[pyo3_async::pyfunction(generator)]
async fn checked_count(
    n: i64,
) -> PyResult<impl futures::Stream<Item = PyResult<i64>> + Send + 'static> {
    suspend_once().await;
    if n < 0 {
        return Err(pyo3::exceptions::PyValueError::new_err("negative count"));
    }
    Ok(futures::stream::iter((0..n).map(Ok)))
}

/// Names the macros' expansions must not trip over: traits' names, and a method of the output
/// named like the one that tells results from values.
#[allow(dead_code)]
struct IsResult;
#[allow(dead_code)]
struct IsValue;

#[pyclass(frozen)]
struct Job;

impl Job {
    #[allow(dead_code)]
    fn output_kind(&self) -> &'static str {
        "batch"
    }
}

#[pyo3_async::pyfunction]
async fn make_job() -> Job {
    Job
}

/// Lints the user forbids, which the expansions must not need to allow.
#[forbid(unused_imports, clippy::needless_borrow)]
mod forbidding {
    use pyo3::prelude::*;

    #[pyo3_async::pyfunction]
    pub(crate) async fn forbidden_lints(value: i64) -> PyResult<i64> {
        Ok(value)
    }

    #[pyo3_async::pyfunction(generator)]
    pub(crate) async fn forbidden_lints_count(
        n: i64,
    ) -> impl futures::Stream<Item = PyResult<i64>> + Send {
        futures::stream::iter((0..n).map(Ok))
    }
}

/// An expectation about a lint that fires in the wrapper (which has the same parameters) and
/// in the body: met, on a function and on a method.
#[expect(clippy::too_many_arguments)]
#[pyo3_async::pyfunction]
async fn eight(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8) -> u32 {
    [a, b, c, d, e, f, g, h].iter().map(|&x| u32::from(x)).sum()
}

/// An expectation about the body only (the wrapper moves the argument on): met.
#[expect(unused_variables)]
#[pyo3_async::pyfunction]
async fn ignores_its_argument(unused: i64) -> i64 {
    0
}

// ---- PyO3 under another path (`crate = "..."`) ----

mod renamed {
    pub(crate) use ::pyo3 as python;
}

#[pyo3_async::pyfunction(crate = "crate::macro_shapes::renamed::python")]
async fn through_renamed(value: i64) -> i64 {
    value * 2
}

#[pyclass(frozen, crate = "crate::macro_shapes::renamed::python")]
struct Renamed;

#[pyo3_async::pymethods(crate = "crate::macro_shapes::renamed::python")]
impl Renamed {
    #[new]
    fn new() -> Self {
        Renamed
    }

    async fn twice(&self, value: i64) -> i64 {
        value * 2
    }
}

// ---- Without the implicit prelude ----

#[no_implicit_prelude]
mod without_prelude {
    use ::core::iter::Iterator;
    use ::pyo3::prelude::*;
    use ::pyo3::types::PyModule;
    use ::std::string::{String, ToString};

    #[::pyo3_async::pyfunction(pass_module)]
    pub(crate) async fn bare_module_name(module: Py<PyModule>) -> PyResult<String> {
        Python::attach(|py| ::core::result::Result::Ok(module.bind(py).name()?.to_string()))
    }

    #[::pyo3_async::pyfunction(generator)]
    pub(crate) async fn bare_count(
        n: u64,
    ) -> impl ::futures::Stream<Item = PyResult<u64>> + ::core::marker::Send {
        ::futures::stream::iter((0..n).map(::core::result::Result::Ok))
    }

    #[::pyo3_async::pyfunction]
    pub(crate) async fn bare_until_cancelled(
        #[pyo3(cancel_handle)] cancel: ::pyo3_async::CancelHandle,
    ) -> PyResult<()> {
        ::core::result::Result::Err(cancel.cancelled().await)
    }

    #[pyclass(frozen)]
    pub(crate) struct Bare;

    #[::pyo3_async::pymethods]
    impl Bare {
        #[new]
        fn new() -> Self {
            Bare
        }

        async fn ping(&self) -> u64 {
            1
        }
    }
}

// ---- PyO3's declarative modules ----

/// `use pyo3_async::pyfunction;` makes `#[pyfunction]` ours, and PyO3's declarative module
/// still sees (and adds) the function; a function exported elsewhere is added with
/// `#[pymodule_export] use`.
#[pymodule]
pub(crate) mod declarative {
    use pyo3_async::pyfunction;

    #[pyfunction]
    async fn declared(value: i64) -> i64 {
        value + 1
    }

    #[pymodule_export]
    use super::exported_elsewhere;
}

#[pyo3_async::pyfunction]
async fn exported_elsewhere() -> &'static str {
    "elsewhere"
}

// ---- Methods: owned `self`, attributes on the body ----

#[pyclass(frozen)]
struct Shapes {
    value: i64,
}

#[pyo3_async::pymethods]
impl Shapes {
    #[new]
    fn new(value: i64) -> Self {
        Shapes { value }
    }

    /// `skip(self)` names the body's `self`, which the wrapper does not have.
    #[tracing::instrument(skip(self), name = "traced_method")]
    async fn traced(&self, extra: i64) -> (Option<&'static str>, i64) {
        suspend_once().await;
        (current_span(), self.value + extra)
    }

    /// The attribute under a condition reaches the body too.
    #[cfg_attr(all(), tracing::instrument(skip(self), name = "conditional"))]
    async fn traced_if(&self) -> Option<&'static str> {
        suspend_once().await;
        current_span()
    }

    /// Without a `name`, the span is named after the method.
    #[tracing::instrument(skip_all)]
    async fn traced_plain_method(&self, mut extra: i64) -> (Option<&'static str>, i64) {
        extra += self.value;
        suspend_once().await;
        (current_span(), extra)
    }

    #[expect(clippy::too_many_arguments)]
    async fn seven(&self, a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8) -> u32 {
        [a, b, c, d, e, f, g].iter().map(|&x| u32::from(x)).sum()
    }

    /// The object owned by the coroutine (`Py<Self>`), instead of borrowed as `&self`.
    async fn owned_self(slf: Py<Self>, extra: i64) -> i64 {
        suspend_once().await;
        slf.get().value + extra
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    crate::spans::install();
    m.add_function(wrap_pyfunction!(traced, m)?)?;
    m.add_function(wrap_pyfunction!(crate::spans::span_at_call, m)?)?;
    m.add_function(wrap_pyfunction!(traced_plain, m)?)?;
    m.add_function(wrap_pyfunction!(make_job, m)?)?;
    m.add_class::<Job>()?;
    m.add_function(wrap_pyfunction!(forbidding::forbidden_lints, m)?)?;
    m.add_function(wrap_pyfunction!(forbidding::forbidden_lints_count, m)?)?;
    m.add_function(wrap_pyfunction!(eight, m)?)?;
    m.add_function(wrap_pyfunction!(ignores_its_argument, m)?)?;
    m.add_function(wrap_pyfunction!(lookup, m)?)?;
    m.add_function(wrap_pyfunction!(shadowing::make_result, m)?)?;
    m.add_class::<shadowing::Result>()?;
    m.add_function(wrap_pyfunction!(checked_count, m)?)?;
    m.add_function(wrap_pyfunction!(through_renamed, m)?)?;
    m.add_class::<Renamed>()?;
    m.add_function(wrap_pyfunction!(without_prelude::bare_module_name, m)?)?;
    m.add_function(wrap_pyfunction!(without_prelude::bare_count, m)?)?;
    m.add_function(wrap_pyfunction!(without_prelude::bare_until_cancelled, m)?)?;
    m.add_class::<without_prelude::Bare>()?;
    m.add_wrapped(pyo3::wrap_pymodule!(declarative))?;
    m.add_class::<Shapes>()?;
    Ok(())
}

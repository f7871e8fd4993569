//! `inspect.iscoroutinefunction` for exported async functions.

use pyo3::prelude::*;

use crate::glue;

/// Makes `inspect.iscoroutinefunction` (and so Starlette, FastAPI, pytest, anyio…) see the
/// named async functions of a module, or async methods of a class, as coroutine functions.
///
/// A function exported through PyO3 is a builtin that returns a coroutine: Python has no way
/// to tell it from a plain function, and frameworks that ask call it from a worker thread or
/// never await it. Python 3.12 added a mark for such callables
/// (`inspect.markcoroutinefunction`), but a builtin cannot carry it, so each named function is
/// replaced by a thin Python wrapper that does, with the function's name, docstring and
/// signature (`__wrapped__`). The wrapper costs one Python-level call per call, which is why
/// this is opt-in. Before 3.12 there is no mark to set: the names are checked, nothing
/// changes.
///
/// Fails with `AttributeError` for a name `owner` lacks, and `TypeError` for one that is not
/// callable.
///
/// ```
/// use pyo3::prelude::*;
///
/// #[pyo3_async::pyfunction]
/// async fn fetch(url: String) -> usize {
///     url.len()
/// }
///
/// #[pymodule]
/// fn client(m: &Bound<'_, PyModule>) -> PyResult<()> {
///     m.add_function(wrap_pyfunction!(fetch, m)?)?;
///     pyo3_async::mark_coroutine_functions(m, &["fetch"])
/// }
/// # fn main() -> PyResult<()> {
/// #     Python::initialize();
/// #     Python::attach(|py| {
/// #         let module = PyModule::new(py, "client")?;
/// #         client(&module)?;
/// #         let marked = py
/// #             .import("inspect")?
/// #             .call_method1("iscoroutinefunction", (module.getattr("fetch")?,))?
/// #             .extract::<bool>()?;
/// #         assert_eq!(marked, py.version_info() >= (3, 12));
/// #         Ok(())
/// #     })
/// # }
/// ```
pub fn mark_coroutine_functions(owner: &Bound<'_, PyAny>, names: &[&str]) -> PyResult<()> {
    glue::mark_coroutine_functions(owner.py())?.call1((owner, names))?;
    Ok(())
}

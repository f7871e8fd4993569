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
/// signature (`__wrapped__`). Before 3.12, which has no mark, the wrapper is an `async def`
/// that awaits the Rust coroutine. Either declares the function's own parameters (where its
/// signature shows them all in Python) and passes them on, so a wrong call still fails when it
/// is made and no argument tuple or dict is packed. The wrapper costs one Python-level call per
/// call (and a native coroutine before 3.12), which is why this is opt-in.
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
/// #         assert!(marked);
/// #         Ok(())
/// #     })
/// # }
/// ```
pub fn mark_coroutine_functions(owner: &Bound<'_, PyAny>, names: &[&str]) -> PyResult<()> {
    glue::mark_coroutine_functions(owner.py())?.call1((owner, names))?;
    Ok(())
}

//! A Python home for the bridge's own types: the user's extension module.

use pyo3::prelude::*;
use pyo3::types::PyModule;

use crate::rust_to_py::async_generator::AsyncGenerator;
use crate::rust_to_py::coroutine::Coroutine;
use crate::rust_to_py::panic::PanicError;

/// Adds [`Coroutine`], [`AsyncGenerator`] and [`PanicError`] to `module` and makes it their
/// home: their `__module__` becomes the module's name, so reprs, `help()`, pickling errors and
/// stub generators point at a module that can be imported (by default they name
/// `pyo3_async`, which is no Python module). Each extension module built with pyo3-async has
/// its own copy of these types: adding them to that module is what makes them reachable.
///
/// ```
/// use pyo3::prelude::*;
///
/// #[pymodule]
/// fn client(m: &Bound<'_, PyModule>) -> PyResult<()> {
///     pyo3_async::add_types(m)
/// }
/// # fn main() -> PyResult<()> {
/// #     Python::initialize();
/// #     Python::attach(|py| {
/// #         let module = PyModule::new(py, "client")?;
/// #         client(&module)?;
/// #         let coroutine_type = module.getattr("Coroutine")?;
/// #         assert_eq!(coroutine_type.getattr("__module__")?.extract::<String>()?, "client");
/// #         Ok(())
/// #     })
/// # }
/// ```
pub fn add_types(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let name = module.name()?;
    module.add_class::<Coroutine>()?;
    module.add_class::<AsyncGenerator>()?;
    module.add("PanicError", py.get_type::<PanicError>())?;
    for name_of in ["Coroutine", "AsyncGenerator", "PanicError"] {
        module.getattr(name_of)?.setattr("__module__", &name)?;
    }
    Ok(())
}

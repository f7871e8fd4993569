use pyo3::prelude::*;
use pyo3::types::PyModule;

#[pyo3_async::pyfunction(pass_module)]
async fn module_name(module: &Bound<'_, PyModule>) -> PyResult<String> {
    Ok(module.name()?.to_string())
}

fn main() {}

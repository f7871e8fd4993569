use pyo3::prelude::*;

#[pyo3_async::pyfunction]
async fn length(items: Bound<'_, PyAny>) -> PyResult<usize> {
    items.len()
}

fn main() {}

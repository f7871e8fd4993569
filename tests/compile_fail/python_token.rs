use pyo3::prelude::*;

#[pyo3_async::pyfunction]
async fn greet(py: Python<'_>, name: String) -> String {
    let _ = py;
    name
}

fn main() {}

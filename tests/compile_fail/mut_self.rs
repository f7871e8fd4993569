use pyo3::prelude::*;

#[pyclass(frozen)]
struct Counter {}

#[pyo3_async::pymethods]
impl Counter {
    async fn bump(&mut self) {}
}

fn main() {}

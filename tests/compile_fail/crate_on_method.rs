use pyo3::prelude::*;

#[pyclass(frozen)]
struct Counter;

#[pyo3_async::pymethods]
impl Counter {
    #[pyo3_async(crate = "pyo3")]
    async fn count(&self) -> usize {
        1
    }
}

fn main() {}

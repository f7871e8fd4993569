use pyo3::prelude::*;

#[pyclass]
struct Counter {
    hits: u64,
}

#[pyo3_async::pymethods]
impl Counter {
    async fn hits(&self) -> u64 {
        self.hits
    }
}

fn main() {}

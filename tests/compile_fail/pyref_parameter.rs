use pyo3::prelude::*;

#[pyclass(frozen)]
struct Counter;

#[pyo3_async::pymethods]
impl Counter {
    async fn count(slf: PyRef<'_, Self>) -> usize {
        let _ = slf;
        1
    }
}

fn main() {}

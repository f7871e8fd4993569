use pyo3::prelude::*;

#[pyclass(frozen)]
struct Plain;

#[pyo3_async::pymethods]
impl Plain {
    #[pyo3_async(trio)]
    fn now(&self) -> u32 {
        1
    }
}

fn main() {}

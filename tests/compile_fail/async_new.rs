use pyo3::prelude::*;

#[pyclass(frozen)]
struct Made {
    value: u32,
}

#[pyo3_async::pymethods]
impl Made {
    #[new]
    async fn new(value: u32) -> Self {
        Made { value }
    }

    #[getter]
    fn value(&self) -> u32 {
        self.value
    }
}

fn main() {}

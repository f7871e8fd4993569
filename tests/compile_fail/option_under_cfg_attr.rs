use pyo3::prelude::*;

#[pyclass(frozen)]
struct Clock;

#[pyo3_async::pymethods]
impl Clock {
    #[cfg_attr(all(), pyo3_async(tokio))]
    async fn tick(&self) -> u8 {
        1
    }
}

fn main() {}

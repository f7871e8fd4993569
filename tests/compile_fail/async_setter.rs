use pyo3::prelude::*;

#[pyclass(frozen)]
struct Thermostat;

#[pyo3_async::pymethods]
impl Thermostat {
    #[setter]
    async fn set_target(&self, value: f64) {
        let _ = value;
    }
}

fn main() {}

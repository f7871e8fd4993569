// Next to a macro's error, the item stays (plainly): what it uses is used, and the error is
// the only thing reported (no "unused import").
use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::PyDict;

#[pyclass(frozen)]
struct Registry;

#[pyo3_async::pymethods]
impl Registry {
    #[new]
    fn new() -> Self {
        Registry
    }

    async fn count(&self, name: &str) -> usize {
        let counts: HashMap<&str, usize> = HashMap::new();
        counts.get(name).copied().unwrap_or(0)
    }
}

#[pyo3_async::test(curio)]
async fn sizes() -> PyResult<()> {
    Python::attach(|py| {
        let dict = PyDict::new(py);
        assert_eq!(dict.len(), 0);
    });
    Ok(())
}

fn main() {}

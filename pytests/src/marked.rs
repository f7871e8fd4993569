//! Exported async functions marked for `inspect.iscoroutinefunction` (test_marked.py).

use pyo3::prelude::*;
use pyo3::types::{PyModule, PyType};
use pyo3_async::Coroutine;

use crate::coroutines::suspend_once;

/// `a + b`, after a suspension. Registered marked (`marked_add`) and not (`unmarked_add`).
#[pyo3_async::pyfunction(signature = (a, b = 2))]
async fn marked_add(a: i64, b: i64) -> i64 {
    suspend_once().await;
    a + b
}

/// `a + b`, marked. Python sees `b=...`: PyO3 writes no default but a literal one.
#[pyo3_async::pyfunction(signature = (a, b = -1))]
async fn marked_offset(a: i64, b: i64) -> i64 {
    a + b
}

/// A Starlette endpoint in Rust: Starlette awaits it only if it sees a coroutine function.
#[pyo3_async::pyfunction]
async fn endpoint(request: Py<PyAny>) -> PyResult<Py<PyAny>> {
    suspend_once().await;
    Python::attach(|py| {
        let path = request.bind(py).getattr("url")?.getattr("path")?;
        let text = format!("hello from Rust at {path}");
        let response = py
            .import("starlette.responses")?
            .getattr("PlainTextResponse")?;
        Ok(response.call1((text,))?.unbind())
    })
}

#[pyclass(frozen)]
struct Adder {
    base: i64,
}

#[pyo3_async::pymethods]
impl Adder {
    #[new]
    fn new(base: i64) -> Self {
        Adder { base }
    }

    /// `base + n`, marked.
    async fn add(&self, n: i64) -> i64 {
        suspend_once().await;
        self.base + n
    }

    /// The same, unmarked.
    async fn add_unmarked(&self, n: i64) -> i64 {
        self.base + n
    }

    /// An async static method, marked: `Adder.version()` and `Adder(1).version()`.
    #[staticmethod]
    async fn version() -> &'static str {
        suspend_once().await;
        "1.0"
    }

    /// A class method returning a coroutine, marked: `Adder.build(n)` and `Adder(1).build(n)`
    /// make an `Adder` of the class they are called on.
    #[classmethod]
    fn build(cls: &Bound<'_, PyType>, base: i64) -> PyResult<Coroutine> {
        let made = cls.call1((base,))?.unbind();
        Ok(Coroutine::new(async move {
            suspend_once().await;
            PyResult::Ok(made)
        }))
    }
}

/// `pyo3_async::mark_coroutine_functions(owner, names)`, for the error cases.
#[pyfunction]
fn mark(owner: &Bound<'_, PyAny>, names: Vec<String>) -> PyResult<()> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    pyo3_async::mark_coroutine_functions(owner, &names)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(marked_add, m)?)?;
    m.add("unmarked_add", wrap_pyfunction!(marked_add, m)?)?;
    m.add_function(wrap_pyfunction!(marked_offset, m)?)?;
    m.add_function(wrap_pyfunction!(endpoint, m)?)?;
    m.add_function(wrap_pyfunction!(mark, m)?)?;
    m.add_class::<Adder>()?;
    pyo3_async::mark_coroutine_functions(m, &["marked_add", "marked_offset", "endpoint"])?;
    pyo3_async::mark_coroutine_functions(&m.getattr("Adder")?, &["add", "version", "build"])
}

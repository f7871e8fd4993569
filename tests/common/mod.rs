//! Shared helpers of the integration tests, which embed the Python interpreter.

#![allow(dead_code)]

use std::ffi::{CStr, CString};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;
use pyo3_async::LoopKind;

/// The `helpers.py` functions, as a module, loaded once: loading code under a module name
/// again re-runs it in the existing module, which would rebind its globals under the feet of
/// tests running in parallel.
pub fn helpers(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    load(
        py,
        &MODULE,
        include_str!("helpers.py"),
        c"helpers.py",
        c"helpers",
    )
}

/// `web.py`: an HTTP site served by uvicorn or hypercorn, and its httpx clients.
pub fn web(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    load(py, &MODULE, include_str!("web.py"), c"web.py", c"web")
}

fn load<'py>(
    py: Python<'py>,
    module: &PyOnceLock<Py<PyModule>>,
    code: &str,
    file: &CStr,
    name: &CStr,
) -> PyResult<Bound<'py, PyModule>> {
    module
        .get_or_try_init(py, || {
            let code = CString::new(code)?;
            PyResult::Ok(PyModule::from_code(py, &code, file, name)?.unbind())
        })
        .map(|module| module.bind(py).clone())
}

/// The loops every scenario runs on.
pub const LOOPS: [LoopKind; 3] = LoopKind::ALL;

//! Shared helpers of the integration tests, which embed the Python interpreter.

#![allow(dead_code)]

pub mod executors;

use std::ffi::{CStr, CString};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;
use pyo3_async::LoopKind;

/// Initialises Python, and imports `threading`, on the same thread: what
/// `#[pyo3_async::test]` does (`pyo3_async::__private::initialize_python`, whose doc says why:
/// otherwise uvloop can take a later test thread for the main thread). Every test calls it
/// before its first attach.
pub fn initialize() {
    pyo3_async::__private::initialize_python();
}

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

/// Silences the default panic message (and backtrace) of panics with exactly this message:
/// tests that panic on purpose keep the log readable; any other panic still prints.
pub fn quiet_panic(message: &'static str) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    static QUIET: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    QUIET
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(message);
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let text = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            let quiet = QUIET.lock().unwrap_or_else(|e| e.into_inner());
            if !text.is_some_and(|text| quiet.contains(&text)) {
                default(info);
            }
        }));
    });
}

/// The loops every scenario runs on.
pub const LOOPS: [LoopKind; 3] = LoopKind::ALL;

//! Shared helpers of the integration tests, which embed the Python interpreter.

#![allow(dead_code)]

use std::ffi::CString;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};

/// Defines Python helpers (`RUNNERS` by loop name, `drain`, `raised`) in a namespace.
pub fn namespace(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let globals = PyDict::new(py);
    let code = CString::new(
        r#"
import asyncio, threading, trio, uvloop

async def await_it(awaitable):
    return await awaitable

async def drain(generator):
    return [item async for item in generator]

def in_python_thread(run, *args):
    # Event loops run in threads that Python created, as in applications. Loops run directly
    # by the tests' Rust threads (attached through PyGILState), several at once, made uvloop
    # fail in about 2% of runs ("this event loop is already running" on a new loop; cause
    # unknown, known gap); never in Python threads.
    outcome = {}
    def target():
        try:
            outcome["value"] = run(*args)
        except BaseException as exc:
            outcome["error"] = exc
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]

def run_asyncio(awaitable):
    return in_python_thread(asyncio.run, await_it(awaitable))

def run_uvloop(awaitable):
    return in_python_thread(uvloop.run, await_it(awaitable))

def run_trio(awaitable):
    return in_python_thread(trio.run, await_it, awaitable)

RUNNERS = {"asyncio": run_asyncio, "uvloop": run_uvloop, "trio": run_trio}

def raised(name, awaitable):
    # Looked at from Python: PyO3 resumes the panic when Rust fetches a PanicException.
    try:
        RUNNERS[name](awaitable)
    except BaseException as exc:
        return exc
    raise AssertionError("nothing was raised")
"#,
    )?;
    py.run(&code, Some(&globals), None)?;
    Ok(globals)
}

/// The `loop_thread.py` helpers, as a module, loaded once: loading code under a module name
/// again re-runs it in the existing module, which would rebind its globals under the feet of
/// tests running in parallel.
pub fn loop_thread_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || {
            let code = CString::new(include_str!("loop_thread.py"))?;
            PyResult::Ok(
                PyModule::from_code(py, &code, c"loop_thread.py", c"loop_thread")?.unbind(),
            )
        })
        .map(|module| module.bind(py).clone())
}

/// The loops every scenario runs on.
pub const LOOPS: [&str; 3] = ["asyncio", "uvloop", "trio"];

/// Runs `awaitable` to completion on the named loop.
pub fn run_on<'py>(
    namespace: &Bound<'py, PyDict>,
    name: &str,
    awaitable: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let runners = namespace.get_item("RUNNERS")?.expect("helpers defined");
    runners.get_item(name)?.call1((awaitable,))
}

/// Runs `awaitable` on the named loop and returns the exception it raised.
pub fn raised_on<'py>(
    namespace: &Bound<'py, PyDict>,
    name: &str,
    awaitable: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let raised = namespace.get_item("raised")?.expect("helpers defined");
    raised.call1((name, awaitable))
}

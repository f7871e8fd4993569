//! `loop.call_soon(function, argument, context=context)`, as asyncio's futures schedule their
//! callbacks: by vectorcall where the API has it (no argument tuple, no keyword dict).

use pyo3::intern;
use pyo3::prelude::*;
#[cfg(not(any(Py_3_12, not(any(Py_LIMITED_API, PyPy)))))]
use pyo3::types::PyDict;

/// `event_loop.call_soon(function, argument, context=context)`, by
/// vectorcall: no argument tuple, no keyword dict.
#[cfg(any(Py_3_12, not(any(Py_LIMITED_API, PyPy))))]
pub(crate) fn call_soon(
    event_loop: &Bound<'_, PyAny>,
    function: &Py<PyAny>,
    argument: &Bound<'_, PyAny>,
    context: &Py<PyAny>,
) -> PyResult<()> {
    use crate::lazy::Lazy;
    use pyo3::ffi;
    use pyo3::types::PyTuple;

    static KEYWORDS: Lazy<Py<PyTuple>> = Lazy::new();
    let py = event_loop.py();
    let keywords = KEYWORDS.get_or_try_init(py, || {
        PyResult::Ok(PyTuple::new(py, [intern!(py, "context")])?.unbind())
    })?;
    let arguments = [
        event_loop.as_ptr(),
        function.as_ptr(),
        argument.as_ptr(),
        context.as_ptr(),
    ];
    // SAFETY: attached (`py`); `arguments` holds borrowed references that outlive the call:
    // the receiver and 2 positional arguments (the count, 3, includes the receiver), then
    // one keyword value per name in `keywords`, a tuple of strings.
    let result = unsafe {
        ffi::PyObject_VectorcallMethod(
            intern!(py, "call_soon").as_ptr(),
            arguments.as_ptr(),
            3,
            keywords.as_ptr(),
        )
    };
    // SAFETY: a new reference, or null with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, result) }.map(drop)
}

/// `event_loop.call_soon(function, argument, context=context)`: the
/// limited API before 3.12 has no vectorcall.
#[cfg(not(any(Py_3_12, not(any(Py_LIMITED_API, PyPy)))))]
pub(crate) fn call_soon(
    event_loop: &Bound<'_, PyAny>,
    function: &Py<PyAny>,
    argument: &Bound<'_, PyAny>,
    context: &Py<PyAny>,
) -> PyResult<()> {
    let py = event_loop.py();
    let keywords = PyDict::new(py);
    keywords.set_item(intern!(py, "context"), context)?;
    event_loop
        .call_method(
            intern!(py, "call_soon"),
            (function, argument),
            Some(&keywords),
        )
        .map(drop)
}

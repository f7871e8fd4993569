//! The exceptions that Rust-driven awaitables raise on their own account, worded as Python's
//! own coroutines and generators word them.

use pyo3::exceptions::{
    PyBaseException, PyRuntimeError, PyStopAsyncIteration, PyStopIteration, PyTypeError,
};
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};

/// Python's own error for resuming a coroutine that has finished.
pub(crate) fn already_awaited() -> PyErr {
    PyRuntimeError::new_err("cannot reuse already awaited coroutine")
}

/// PEP 479: a `StopIteration` leaving a coroutine would be taken for its return (or wedge the
/// task, depending on the Python version and loop). It becomes a `RuntimeError` whose
/// `__cause__` (and `__context__`) is the original.
pub(crate) fn coroutine_error(py: Python<'_>, err: Box<PyErr>) -> Box<PyErr> {
    if err.is_instance_of::<PyStopIteration>(py) {
        return Box::new(replaced(py, *err, "coroutine raised StopIteration"));
    }
    err
}

/// PEP 479 for async generators: an item that is a `StopAsyncIteration` or `StopIteration`
/// error would end the iteration silently; it becomes a `RuntimeError` caused by it.
pub(crate) fn stream_item_error(py: Python<'_>, err: PyErr) -> PyErr {
    if err.is_instance_of::<PyStopAsyncIteration>(py) {
        return replaced(py, err, "async generator raised StopAsyncIteration");
    }
    if err.is_instance_of::<PyStopIteration>(py) {
        return replaced(py, err, "async generator raised StopIteration");
    }
    err
}

/// An exception thrown into a suspended coroutine leaves its body, as one the body raised:
/// PEP 479 applies (to a generator's step, for `StopAsyncIteration` too).
pub(crate) fn thrown_out(py: Python<'_>, err: Box<PyErr>, step: bool) -> Box<PyErr> {
    if step {
        Box::new(stream_item_error(py, *err))
    } else {
        coroutine_error(py, err)
    }
}

/// As CPython replaces it: the original is both the cause and the context.
fn replaced(py: Python<'_>, original: PyErr, message: &str) -> PyErr {
    let error = PyRuntimeError::new_err(message.to_owned());
    error.set_context(py, Some(original.clone_ref(py)));
    error.set_cause(py, Some(original));
    error
}

/// Builds the exception of `throw(typ[, val[, tb]])`, with the forms generators accept.
pub(crate) fn thrown_exception(
    typ: &Bound<'_, PyAny>,
    val: Option<&Bound<'_, PyAny>>,
    tb: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyErr> {
    let py = typ.py();
    let val = val.filter(|val| !val.is_none());
    let exception = if let Ok(class) = typ.cast::<PyType>() {
        if !class.is_subclass_of::<PyBaseException>()? {
            return Err(not_an_exception(typ));
        }
        match val {
            Some(val) if val.is_instance(class)? => val.clone(),
            Some(args) => match args.cast::<PyTuple>() {
                Ok(args) => class.call1(args)?,
                Err(_) => class.call1((args,))?,
            },
            None => class.call0()?,
        }
    } else if typ.is_instance_of::<PyBaseException>() {
        if val.is_some() {
            return Err(PyTypeError::new_err(
                "instance exception may not have a separate value",
            ));
        }
        typ.clone()
    } else {
        return Err(not_an_exception(typ));
    };
    if let Some(tb) = tb.filter(|tb| !tb.is_none()) {
        exception.call_method1(pyo3::intern!(py, "with_traceback"), (tb,))?;
    }
    Ok(PyErr::from_value(exception))
}

fn not_an_exception(typ: &Bound<'_, PyAny>) -> PyErr {
    let name = typ
        .get_type()
        .name()
        .map(|name| name.to_string())
        .unwrap_or_default();
    PyTypeError::new_err(format!(
        "exceptions must be classes or instances deriving from BaseException, not {name}"
    ))
}

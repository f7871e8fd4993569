//! The exceptions that Rust-driven awaitables raise on their own account, worded as Python's
//! own coroutines and generators word them.

use pyo3::exceptions::{
    PyBaseException, PyRuntimeError, PyStopAsyncIteration, PyStopIteration, PyTypeError,
};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};

/// Python's own error for resuming a coroutine that has finished.
pub(crate) fn already_awaited() -> PyErr {
    PyRuntimeError::new_err("cannot reuse already awaited coroutine")
}

/// PEP 479: a `StopIteration` leaving a coroutine would be taken for its return (or wedge the
/// task, depending on the Python version and loop). It becomes a `RuntimeError` whose
/// `__cause__` (and `__context__`) is the original. The error is [`made`] first.
pub(crate) fn coroutine_error(py: Python<'_>, err: PyErr) -> Box<PyErr> {
    coroutine_pep479(py, Box::new(made(py, err)))
}

/// PEP 479 for async generators: an item that is a `StopAsyncIteration` or `StopIteration`
/// error would end the iteration silently; it becomes a `RuntimeError` caused by it. The
/// error is [`made`] first.
pub(crate) fn stream_item_error(py: Python<'_>, err: PyErr) -> PyErr {
    stream_pep479(py, made(py, err))
}

/// An exception thrown into a suspended coroutine leaves its body, as one the body raised:
/// PEP 479 applies (to a generator's step, for `StopAsyncIteration` too). A thrown exception
/// is made already ([`thrown_exception`]).
pub(crate) fn thrown_out(py: Python<'_>, err: Box<PyErr>, step: bool) -> Box<PyErr> {
    if step {
        Box::new(stream_pep479(py, *err))
    } else {
        coroutine_pep479(py, err)
    }
}

fn coroutine_pep479(py: Python<'_>, err: Box<PyErr>) -> Box<PyErr> {
    if err.is_instance_of::<PyStopIteration>(py) {
        return Box::new(replaced(py, *err, "coroutine raised StopIteration"));
    }
    err
}

fn stream_pep479(py: Python<'_>, err: PyErr) -> PyErr {
    if err.is_instance_of::<PyStopAsyncIteration>(py) {
        return replaced(py, err, "async generator raised StopAsyncIteration");
    }
    if err.is_instance_of::<PyStopIteration>(py) {
        return replaced(py, err, "async generator raised StopIteration");
    }
    err
}

/// `err` with its exception made, here and attached, before anything reads it.
///
/// A Rust function's error is usually lazy (`PyValueError::new_err(..)`): PyO3 makes the
/// exception when it is first read, and does so with the thread *detached*, attaching again
/// through `Python::attach`. In the middle of a step that lets other threads run Python code
/// (and step this coroutine: "already running", depending on timing), and once the interpreter
/// finalises, `Python::attach` panics: a stream ending in a finaliser at exit raised
/// `PanicError` instead of `StopAsyncIteration` (round 10). Raised and taken back, the
/// exception is made by CPython on this thread. (`PyErr::take` is not used: it turns a
/// `PanicException` back into a Rust panic.)
pub(crate) fn made(py: Python<'_>, err: PyErr) -> PyErr {
    err.restore(py);
    // SAFETY: attached, with the exception just raised: each call hands over owned references
    // (or null), which `from_owned_ptr_or_opt` takes.
    let raised = unsafe {
        #[cfg(Py_3_12)]
        {
            ffi::PyErr_GetRaisedException()
        }
        #[cfg(not(Py_3_12))]
        {
            let (mut kind, mut value, mut traceback) = (
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            ffi::PyErr_Fetch(&mut kind, &mut value, &mut traceback);
            ffi::PyErr_NormalizeException(&mut kind, &mut value, &mut traceback);
            if !value.is_null() && !traceback.is_null() {
                ffi::PyException_SetTraceback(value, traceback);
            }
            drop(Bound::from_owned_ptr_or_opt(py, kind));
            drop(Bound::from_owned_ptr_or_opt(py, traceback));
            value
        }
    };
    // SAFETY: an owned reference to the exception, or null.
    match unsafe { Bound::from_owned_ptr_or_opt(py, raised) } {
        Some(exception) => PyErr::from_value(exception),
        None => PyRuntimeError::new_err("an error was lost while it was raised"),
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

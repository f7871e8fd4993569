//! What `await` does to a [`Coroutine`](crate::Coroutine) under the limited API: moves it into
//! a class that has an `am_send` slot.
//!
//! With the full API, the coroutine's own class gets the slot (see `send_slot`). The limited API
//! cannot reach the slots of a class once PyO3 has made it, but it can make a class with any
//! slot: `PyType_FromSpecWithBases` makes a subclass of `Coroutine` that adds `am_send` and
//! nothing else (same layout, same name, PyO3's deallocation, which frees subclasses too).
//! `__await__` moves the coroutine into it, as assigning `__class__` does (a class of the same
//! layout, the same two reference counts moved), so `await` gets each result without a
//! `StopIteration` and without an object per await: a ready `await` costs what it costs with
//! the full API, plus the trampoline of `__await__`, which the full API skips (`am_await`).
//!
//! Everything else sees a `Coroutine`: `isinstance`, PyO3's casts (the class is a subclass),
//! the attributes and the collector (inherited). Only `type(coroutine) is Coroutine` tells an
//! awaited coroutine apart.

use std::ffi::{c_uint, c_void};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};

use crate::rust_to_py::send_slot::{am_send, am_send_flag, SendSlot};

/// Moves `coroutine` into its awaited class (made on first use, once per process) and returns
/// it.
pub(crate) fn enter<'py, T: SendSlot>(
    coroutine: Bound<'py, T>,
    class: &'static PyOnceLock<Py<PyType>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = coroutine.py();
    let class = class.get_or_try_init(py, || make_class::<T>(py))?;
    let target = class.as_ptr().cast::<ffi::PyTypeObject>();
    // SAFETY: `coroutine` is a live instance of `T`'s class or of `target`, a subclass of it
    // with the same layout (no slot adds to it), the GC flag (checked when it was made) and the
    // base's deallocation: what `object.__class__ = ...` requires of two classes. An instance
    // holds a reference to its (heap) class: the new one is taken before the old one goes.
    unsafe {
        let object = coroutine.as_ptr();
        let current = ffi::Py_TYPE(object);
        if current != target {
            ffi::Py_INCREF(target.cast());
            (*object).ob_type = target;
            ffi::Py_DECREF(current.cast());
        }
    }
    Ok(coroutine.into_any())
}

fn make_class<T: SendSlot>(py: Python<'_>) -> PyResult<Py<PyType>> {
    let base = py.get_type::<T>();
    // SAFETY: a live class; every class has a `tp_dealloc`, PyO3's for `T`, which frees
    // instances of subclasses as well (it reads the class off the instance).
    let dealloc = unsafe { ffi::PyType_GetSlot(base.as_type_ptr(), ffi::Py_tp_dealloc) };
    let mut slots = [
        ffi::PyType_Slot {
            slot: ffi::Py_am_send,
            pfunc: am_send::<T> as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_dealloc,
            pfunc: dealloc,
        },
        ffi::PyType_Slot::default(),
    ];
    let mut spec = ffi::PyType_Spec {
        name: c"pyo3_async.Coroutine".as_ptr(),
        // The base's size: the class adds no field.
        basicsize: 0,
        itemsize: 0,
        flags: (ffi::Py_TPFLAGS_DEFAULT | am_send_flag(py)) as c_uint,
        slots: slots.as_mut_ptr(),
    };
    let bases = PyTuple::new(py, [&base])?;
    // SAFETY: the spec and its slots outlive the call, which copies what it keeps.
    let class = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpecWithBases(&mut spec, bases.as_ptr()))
    }?
    .cast_into::<PyType>()?;
    // The collector must follow instances of either class alike: the flag is inherited with
    // the base's traversal; checked rather than assumed.
    let gc = ffi::Py_TPFLAGS_HAVE_GC as std::ffi::c_ulong;
    // SAFETY: live classes.
    let flags = unsafe {
        (
            ffi::PyType_GetFlags(base.as_type_ptr()),
            ffi::PyType_GetFlags(class.as_type_ptr()),
        )
    };
    if flags.0 & gc != flags.1 & gc {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "pyo3_async: the awaited Coroutine class did not inherit garbage collection",
        ));
    }
    // Where the base says it lives (the module that exported it), not the spec's name.
    class.setattr(
        pyo3::intern!(py, "__module__"),
        base.getattr(pyo3::intern!(py, "__module__"))?,
    )?;
    Ok(class.unbind())
}

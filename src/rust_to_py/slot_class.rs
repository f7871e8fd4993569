//! Slots added to a class PyO3 made, under the limited API: through a subclass.
//!
//! With the full API, the slots PyO3 cannot declare are filled into its classes once they
//! exist (`send_slot`, `anext_slot`). The limited API cannot reach a class's slots, but it can
//! make a class with any slot: `PyType_FromSpecWithBases` makes a subclass that adds them and
//! nothing else (same layout, same name and module, PyO3's deallocation, which frees instances
//! of subclasses too). An object is moved into it as assigning `__class__` moves one (a class
//! of the same layout, the two reference counts moved): `Coroutine.__await__` moves the
//! coroutine into its *awaited* class (`am_send`, a fast `am_await`), so `await` gets each
//! result without a `StopIteration` and without an object per await. Every coroutine
//! handed to Python is made in that class at once (its `IntoPyObject`), so its `await` skips
//! PyO3's `__await__` too. `AsyncGenerator.__aiter__`
//! moves the generator into its *iterated* class (a fast `am_anext`), whose steps are made in
//! the awaited class already.
//!
//! Everything else sees the PyO3 class: `isinstance`, PyO3's casts (a subclass passes), the
//! attributes and the collector (inherited). Only `type(x) is Coroutine` tells them apart. The
//! PyO3 classes allow subclasses under the limited API for this; having no constructor, a
//! Python subclass of them has no instances.

use std::ffi::{c_int, c_ulong, c_void};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};

use crate::refcount;

/// A subclass of `base` adding `slots` (and the type `flags` they need), named as `base` is.
pub(crate) fn subclass(
    base: &Bound<'_, PyType>,
    name: &'static std::ffi::CStr,
    slots: &[(c_int, *mut c_void)],
    flags: c_ulong,
) -> PyResult<Py<PyType>> {
    let py = base.py();
    // SAFETY: a live class; every class has a `tp_dealloc`, PyO3's here, which frees instances
    // of subclasses as well (it reads the class off the instance and releases that one).
    let dealloc = unsafe { ffi::PyType_GetSlot(base.as_type_ptr(), ffi::Py_tp_dealloc) };
    // A class given a traversal of its own inherits neither the collector's flag nor the
    // base's clearing (CPython copies them only to a class that defines neither): both said.
    let mut flags = flags;
    let mut inherited = vec![(ffi::Py_tp_dealloc, dealloc)];
    if slots.iter().any(|&(slot, _)| slot == ffi::Py_tp_traverse) {
        flags |= ffi::Py_TPFLAGS_HAVE_GC as c_ulong;
        // SAFETY: a live class.
        let clear = unsafe { ffi::PyType_GetSlot(base.as_type_ptr(), ffi::Py_tp_clear) };
        if !clear.is_null() {
            inherited.push((ffi::Py_tp_clear, clear));
        }
    }
    let mut spec_slots: Vec<ffi::PyType_Slot> = slots
        .iter()
        .chain(&inherited)
        .map(|&(slot, pfunc)| ffi::PyType_Slot { slot, pfunc })
        .chain([ffi::PyType_Slot::default()])
        .collect();
    let mut spec = ffi::PyType_Spec {
        name: name.as_ptr(),
        // The base's size: the class adds no field.
        basicsize: 0,
        itemsize: 0,
        flags: (ffi::Py_TPFLAGS_DEFAULT as c_ulong | flags) as std::ffi::c_uint,
        slots: spec_slots.as_mut_ptr(),
    };
    let bases = PyTuple::new(py, [base])?;
    // SAFETY: the spec and its slots outlive the call, which copies what it keeps.
    let class = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpecWithBases(&mut spec, bases.as_ptr()))
    }?
    .cast_into::<PyType>()?;
    // The collector must follow instances of either class alike: the flag is inherited with
    // the base's traversal; checked rather than assumed.
    let gc = ffi::Py_TPFLAGS_HAVE_GC as c_ulong;
    // SAFETY: live classes.
    let flags = unsafe {
        (
            ffi::PyType_GetFlags(base.as_type_ptr()),
            ffi::PyType_GetFlags(class.as_type_ptr()),
        )
    };
    if flags.0 & gc != flags.1 & gc {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "pyo3_async: a slot subclass did not inherit garbage collection",
        ));
    }
    // Where the base says it lives (the module that exported it), not the spec's name.
    class.setattr(
        pyo3::intern!(py, "__module__"),
        base.getattr(pyo3::intern!(py, "__module__"))?,
    )?;
    Ok(class.unbind())
}

/// Moves `object` into `class`, unless it is there already.
///
/// # Safety
/// `class` was made by [`subclass`] from the class of `object` (or `object` is in `class`).
pub(crate) unsafe fn move_into(object: &Bound<'_, PyAny>, class: &Py<PyType>) {
    let target = class.as_ptr().cast::<ffi::PyTypeObject>();
    // SAFETY: `target` has the layout of `object`'s class (see `subclass`: no field added),
    // its GC flag and its deallocation: what `object.__class__ = ...` requires of two
    // classes. An instance holds a reference to its (heap) class: the new one is taken before
    // the old one goes.
    unsafe {
        let object = object.as_ptr();
        let current = ffi::Py_TYPE(object);
        if current != target {
            refcount::incref(target.cast());
            (*object).ob_type = target;
            refcount::decref(current.cast());
        }
    }
}

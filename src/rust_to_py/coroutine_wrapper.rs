//! What `await` gets from a [`Coroutine`](crate::Coroutine) under the limited API: a small
//! iterator whose type has an `am_send` slot.
//!
//! With the full API, the coroutine's own type gets the slot (see `send_slot`). The limited API
//! cannot reach the slots of a type once PyO3 has made it, but it can make a type with any
//! slot (`PyType_FromSpec`). So `__await__` returns this wrapper, whose `am_send` resumes the
//! coroutine: `await` then gets each result without a `StopIteration`, which is about half the
//! cost of awaiting a ready Rust future, for one small allocation per `await`. Like CPython's
//! own `coroutine_wrapper` (what `__await__` of an `async def` coroutine returns), it is an
//! iterator, and its other attributes (`send`, `throw`, `close`, ...) are the coroutine's.
//!
//! Tasks do not go through it: asyncio and trio resume the coroutine object itself.
//!
//! The wrapper takes part in garbage collection: a native coroutine awaiting a Rust one holds
//! the wrapper in its frame, so a forgotten task parked there is a cycle through it. The
//! collector may clear it (the coroutine reference becomes null), after which its methods
//! raise `RuntimeError`.

use std::ffi::{c_int, c_uint, c_void};
use std::mem;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::exceptions::{PyAttributeError, PyStopIteration};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};

use crate::rust_to_py::send_slot::{am_send, am_send_flag, SendSlot};
use crate::rust_to_py::slot_entry::enter_slot;

/// The wrapper's instance layout.
#[repr(C)]
struct Wrapper {
    ob_base: ffi::PyObject,
    /// The coroutine, a strong reference; null once the collector cleared the wrapper.
    coroutine: *mut ffi::PyObject,
}

/// `coroutine.__await__()`: a new wrapper around `coroutine`, a `T`. `wrapper_type` is `T`'s
/// cell for the wrapper type, made on first use.
pub(crate) fn wrap<'py, T: SendSlot>(
    coroutine: Bound<'py, T>,
    wrapper_type: &'static PyOnceLock<Py<PyType>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = coroutine.py();
    let wrapper_type = wrapper_type.get_or_try_init(py, || make_type::<T>(py))?;
    // SAFETY: the type is a live heap type whose instances have `Wrapper`'s layout. A new
    // instance (zeroed, one reference, which holds a reference to its type) gets the
    // coroutine's reference before any Python code can see it (the collector may traverse it
    // in between, and skips the null pointer).
    unsafe {
        let wrapper = ffi::PyType_GenericAlloc(wrapper_type.as_ptr().cast(), 0);
        let wrapper = Bound::from_owned_ptr_or_err(py, wrapper)?;
        (*wrapper.as_ptr().cast::<Wrapper>()).coroutine = coroutine.into_ptr();
        Ok(wrapper)
    }
}

fn make_type<T: SendSlot>(py: Python<'_>) -> PyResult<Py<PyType>> {
    let slots = [
        (ffi::Py_am_send, send::<T> as *mut c_void),
        (ffi::Py_tp_iternext, next::<T> as *mut c_void),
        (ffi::Py_tp_iter, ffi::PyObject_SelfIter as *mut c_void),
        (ffi::Py_tp_getattro, getattro as *mut c_void),
        (ffi::Py_tp_dealloc, dealloc as *mut c_void),
        (ffi::Py_tp_traverse, traverse as *mut c_void),
        (ffi::Py_tp_clear, clear as *mut c_void),
    ];
    let mut slots: Vec<ffi::PyType_Slot> = slots
        .into_iter()
        .map(|(slot, pfunc)| ffi::PyType_Slot { slot, pfunc })
        .chain([ffi::PyType_Slot::default()])
        .collect();
    let flags = (ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_HAVE_GC | am_send_flag(py)) as c_uint;
    let mut spec = ffi::PyType_Spec {
        // The type keeps pointing into its name: it must be static.
        name: c"pyo3_async.coroutine_wrapper".as_ptr(),
        basicsize: mem::size_of::<Wrapper>() as c_int,
        itemsize: 0,
        flags,
        slots: slots.as_mut_ptr(),
    };
    // SAFETY: the spec is complete and terminated; CPython copies the slots it is given (the
    // array may go after the call) and keeps the static name.
    let wrapper_type =
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpec(&mut spec)) }?;
    // SAFETY: a live type object; every type has a `tp_free` (inherited from `object`).
    let free = unsafe { ffi::PyType_GetSlot(wrapper_type.as_ptr().cast(), ffi::Py_tp_free) };
    TP_FREE.store(free.cast(), Ordering::Relaxed);
    Ok(wrapper_type.cast_into::<PyType>()?.unbind())
}

/// The coroutine inside a wrapper.
///
/// # Safety
/// `wrapper` is a live wrapper.
unsafe fn coroutine_of(wrapper: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: per the contract, `wrapper` has `Wrapper`'s layout and was given its coroutine
    // when it was made.
    unsafe { (*wrapper.cast::<Wrapper>()).coroutine }
}

/// `am_send`: the coroutine's.
///
/// # Safety
/// Called by CPython only, as the wrapper's `am_send`.
unsafe extern "C" fn send<T: SendSlot>(
    wrapper: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
    result: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    // SAFETY: CPython's contract: `wrapper` is live and the thread attached.
    let coroutine = unsafe { coroutine_of(wrapper) };
    if coroutine.is_null() {
        // SAFETY: CPython called this slot on an attached thread (see `slot_entry`).
        unsafe { enter_slot(ptr::null_mut(), |_| Err::<*mut ffi::PyObject, _>(cleared())) };
        return ffi::PySendResult::PYGEN_ERROR;
    }
    // SAFETY: the wrapper made for `T` holds a live `T`; the rest is CPython's contract.
    unsafe { am_send::<T>(coroutine, value, result) }
}

/// The error of a wrapper the collector cleared: only code that finalizers run (while the
/// cycle is torn down) can still reach it.
fn cleared() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err("cannot resume a coroutine being garbage-collected")
}

/// `__next__`: a send of `None`, with the result in `StopIteration` as iterators report it.
///
/// # Safety
/// Called by CPython only, as the wrapper's `tp_iternext`.
unsafe extern "C" fn next<T: SendSlot>(wrapper: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let mut result = ptr::null_mut();
    // SAFETY: as in `send`; `Py_None` is a live object.
    match unsafe { send::<T>(wrapper, ffi::Py_None(), &mut result) } {
        ffi::PySendResult::PYGEN_NEXT => result,
        // SAFETY: CPython called this slot on an attached thread (see `slot_entry`).
        ffi::PySendResult::PYGEN_RETURN => unsafe {
            enter_slot(ptr::null_mut(), |py| {
                // SAFETY: `result` is the new reference `am_send` returned with.
                let output = Bound::from_owned_ptr(py, result);
                Err(PyStopIteration::new_err((output.unbind(),)))
            })
        },
        ffi::PySendResult::PYGEN_ERROR => ptr::null_mut(),
    }
}

/// Attributes: the wrapper's own, else the coroutine's (`send`, `throw`, `close`, ...).
///
/// # Safety
/// Called by CPython only, as the wrapper's `tp_getattro`.
unsafe extern "C" fn getattro(
    wrapper: *mut ffi::PyObject,
    name: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's contract: `wrapper` and `name` are live, the thread is attached.
    let own = unsafe { ffi::PyObject_GenericGetAttr(wrapper, name) };
    if !own.is_null() {
        return own;
    }
    // SAFETY: CPython called this slot on an attached thread (see `slot_entry`).
    unsafe {
        enter_slot(ptr::null_mut(), |py| {
            let missing = PyErr::fetch(py);
            if !missing.is_instance_of::<PyAttributeError>(py) {
                return Err(missing);
            }
            let coroutine = coroutine_of(wrapper);
            if coroutine.is_null() {
                return Err(cleared());
            }
            // SAFETY: the coroutine is live while its wrapper holds it; `name` is borrowed.
            let (coroutine, name) = (
                Bound::from_borrowed_ptr(py, coroutine),
                Bound::from_borrowed_ptr(py, name),
            );
            let name = name.cast_into::<PyString>()?;
            Ok(coroutine.getattr(name)?.into_ptr())
        })
    }
}

/// `tp_traverse`: the coroutine, and the type (a heap type's instances report it).
///
/// # Safety
/// Called by CPython only, as the wrapper's `tp_traverse`.
unsafe extern "C" fn traverse(
    wrapper: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: CPython's contract: `wrapper` is live; `visit` accepts its referents.
    unsafe {
        let coroutine = coroutine_of(wrapper);
        if !coroutine.is_null() {
            let visited = visit(coroutine, arg);
            if visited != 0 {
                return visited;
            }
        }
        visit(ffi::Py_TYPE(wrapper).cast(), arg)
    }
}

/// `tp_clear`: lets go of the coroutine, which breaks the cycle.
///
/// # Safety
/// Called by CPython only, as the wrapper's `tp_clear`.
unsafe extern "C" fn clear(wrapper: *mut ffi::PyObject) -> c_int {
    // SAFETY: `wrapper` is live; the pointer is nulled before the reference is released, so
    // code that the release runs never sees a dangling coroutine.
    unsafe {
        let slot = &mut (*wrapper.cast::<Wrapper>()).coroutine;
        let coroutine = mem::replace(slot, ptr::null_mut());
        if !coroutine.is_null() {
            ffi::Py_DECREF(coroutine);
        }
    }
    0
}

/// The wrapper type's `tp_free`, read once when the type is made.
static TP_FREE: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());

/// Frees the wrapper, then lets go of the coroutine and of the type.
///
/// # Safety
/// Called by CPython only, as the wrapper's `tp_dealloc`, when its last reference goes.
unsafe extern "C" fn dealloc(wrapper: *mut ffi::PyObject) {
    // SAFETY: `wrapper` is a wrapper nobody refers to any more, untracked before it is freed;
    // its type is a heap type, which its instances hold a reference to, and whose `tp_free`
    // (the collector's, for a type with `Py_TPFLAGS_HAVE_GC`) frees memory from
    // `PyType_GenericAlloc`. The coroutine's reference was the wrapper's own (null if cleared).
    unsafe {
        ffi::PyObject_GC_UnTrack(wrapper.cast());
        let coroutine = coroutine_of(wrapper);
        let wrapper_type = ffi::Py_TYPE(wrapper);
        // Set with the type, before any wrapper existed (the limited API hides `tp_free`
        // behind `PyType_GetSlot`, a lookup per call otherwise).
        let free: ffi::freefunc = mem::transmute(TP_FREE.load(Ordering::Relaxed));
        free(wrapper.cast());
        ffi::Py_DECREF(wrapper_type.cast());
        if !coroutine.is_null() {
            ffi::Py_DECREF(coroutine);
        }
    }
}

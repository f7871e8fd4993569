//! The `am_send` slot of [`Coroutine`]: how CPython resumes it without `StopIteration`.
//!
//! Python's `await` (the `SEND` instruction) and asyncio's C tasks resume an awaitable with
//! `PyIter_Send`, which uses the type's `am_send` slot when there is one and otherwise calls
//! `send`/`__next__` and digs the result out of a `StopIteration`. Raising and catching that
//! exception (an exception object, its argument tuple, the error indicator round trip) is most
//! of the cost of awaiting a ready Rust future. PyO3 has no way to declare `am_send`, so the
//! slot is filled in on the class once it exists; the Python methods stay for everyone else
//! (trio calls `coro.send(...)`). The limited API cannot fill in a slot: there, `await` moves
//! the coroutine into a subclass made with the slot (`awaited_class`), the same [`am_send`].
//!
//! `am_await` is filled in beside it, for the same reason: `await coroutine` first calls it,
//! and PyO3's trampoline around `__await__` (attach, catch a panic, detach) costs more than
//! what the common case does, which is to mark the coroutine awaited and return it. Every
//! other case (a second await, a finished coroutine) goes on to the `__await__` PyO3 made.

#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
use std::ptr;
#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
use std::sync::atomic::Ordering;

#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
use pyo3::ffi;
use pyo3::prelude::*;
#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
use pyo3::types::PyNone;

use pyo3::PyClass;

#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
use crate::refcount;
#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
use crate::rust_to_py::driver::Resumed;
use crate::rust_to_py::driver::Stepped;
#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
use crate::rust_to_py::slot_entry::enter_slot;
#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
use crate::rust_to_py::stop_iteration;

/// A class whose instances CPython resumes through `am_send` (`Coroutine`).
pub(crate) trait SendSlot: PyClass {
    /// Resumes the awaitable with `value`, as its `send` method does.
    #[cfg_attr(not(all(Py_3_10, not(Py_GIL_DISABLED))), allow(dead_code))]
    fn send_value(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> Stepped;

    /// `__await__`'s common case: marks the awaitable awaited and returns `true` if it had
    /// never been awaited, started or closed; `false` (and nothing changed) otherwise.
    /// Calls no Python code and drops no Python object.
    #[cfg_attr(not(all(Py_3_10, not(Py_GIL_DISABLED))), allow(dead_code))]
    fn claim_for_await(slf: &Bound<'_, Self>) -> bool;

    /// The address of the Rust value: who a result raised in the spare `StopIteration`
    /// belongs to, until its drop says `stop_iteration::forget_result`.
    #[cfg_attr(not(all(Py_3_10, not(Py_GIL_DISABLED))), allow(dead_code))]
    fn address(slf: &Bound<'_, Self>) -> usize;
}

// The slot exists since Python 3.10; the limited API cannot reach type slots, and a
// free-threaded interpreter could read the slot while it is written.
#[cfg(all(Py_3_10, not(Py_LIMITED_API), not(Py_GIL_DISABLED)))]
pub(crate) fn install_slot<T: SendSlot>(py: Python<'_>) {
    let class = py.get_type::<T>();
    let class = class.as_type_ptr();
    // SAFETY: `class` is the live, fully initialised heap type of `Coroutine` (PyO3 created
    // it above and keeps it for the process); heap types point `tp_as_async` at their own
    // embedded slot table, which `__await__` made non-null. The interpreter is attached and
    // has a GIL, so no other thread reads the table while it is written; `PyType_Modified`
    // drops cached lookups of the type.
    unsafe {
        if let Some(slots) = (*class).tp_as_async.as_mut() {
            if let Some(method) = slots.am_await {
                if ptr::fn_addr_eq(method, am_await::<T> as ffi::unaryfunc) {
                    return;
                }
                AWAIT_METHOD.store(method as *mut (), Ordering::Relaxed);
                slots.am_await = Some(am_await::<T>);
            }
            slots.am_send = Some(am_send::<T>);
            (*class).tp_iternext = Some(iternext::<T>);
            (*class).tp_flags |= am_send_flag(py);
            ffi::PyType_Modified(class);
        }
    }
}

/// The `am_await` PyO3 made (its trampoline around `__await__`), set before [`am_await`] is
/// installed in its place (or in the abi3 awaited class).
#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
static AWAIT_METHOD: std::sync::atomic::AtomicPtr<()> =
    std::sync::atomic::AtomicPtr::new(ptr::null_mut());

/// The slots of `T`'s awaited class under the limited API (see `slot_class`): `am_send`,
/// `am_await` in front of the `__await__` PyO3 made for `base`, `tp_iternext`, and an
/// `__await__` method for calls by hand, which goes to PyO3's as the full API's does (the slot's
/// own wrapper would go through [`am_await`], which notes an `await`: `stop_iteration`).
#[cfg(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED)))]
pub(crate) fn awaited_slots<T: SendSlot>(
    base: &Bound<'_, pyo3::types::PyType>,
) -> [(std::ffi::c_int, *mut std::ffi::c_void); 4] {
    // SAFETY: a live class, which has `__await__` (PyO3's trampoline in `am_await`).
    let method = unsafe { ffi::PyType_GetSlot(base.as_type_ptr(), ffi::Py_am_await) };
    AWAIT_METHOD.store(method.cast(), Ordering::Relaxed);
    RETURN_CHAINS.store(base.py().version_info() < (3, 14), Ordering::Relaxed);
    [
        (ffi::Py_am_send, am_send::<T> as *mut std::ffi::c_void),
        (ffi::Py_am_await, am_await::<T> as *mut std::ffi::c_void),
        (ffi::Py_tp_iternext, iternext::<T> as *mut std::ffi::c_void),
        (
            ffi::Py_tp_methods,
            AWAIT_BY_HAND.0.as_ptr() as *mut std::ffi::c_void,
        ),
    ]
}

/// The awaited class's `__await__` method: `METH_COEXIST` puts it in place of the wrapper
/// CPython would make from the `am_await` slot.
#[cfg(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED)))]
static AWAIT_BY_HAND: MethodTable = MethodTable([
    ffi::PyMethodDef {
        ml_name: c"__await__".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunction: await_by_hand,
        },
        ml_flags: ffi::METH_NOARGS | ffi::METH_COEXIST,
        ml_doc: c"Return an iterator to be used in await expression.".as_ptr(),
    },
    ffi::PyMethodDef::zeroed(),
]);

/// A method table that CPython only reads.
#[cfg(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED)))]
struct MethodTable([ffi::PyMethodDef; 2]);

// SAFETY: the table is immutable, and its pointers are to static strings and a function.
#[cfg(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED)))]
unsafe impl Sync for MethodTable {}

/// `coroutine.__await__()` called by hand on the awaited class: PyO3's `__await__`.
#[cfg(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED)))]
unsafe extern "C" fn await_by_hand(
    coroutine: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls the method with a live instance of the awaited class; the class
    // exists only once `awaited_slots` set `AWAIT_METHOD`, PyO3's trampoline, which takes it.
    unsafe {
        let method: ffi::unaryfunc = std::mem::transmute(AWAIT_METHOD.load(Ordering::Relaxed));
        method(coroutine)
    }
}

/// `await coroutine`: returns the coroutine itself when [`SendSlot::claim_for_await`] takes
/// it; otherwise `__await__` decides (and raises).
#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
unsafe extern "C" fn am_await<T: SendSlot>(coroutine: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython calls the slot on an attached thread, with a live instance of the type
    // the slot was installed on, `T`'s (or a subclass of it, which shares its layout). The
    // token does not outlive this call, and no Python object is dropped under it: the
    // reference made is handed back to CPython.
    unsafe {
        let py = Python::assume_attached();
        let instance = Borrowed::from_ptr(py, coroutine).cast_unchecked::<T>();
        if T::claim_for_await(&instance) {
            stop_iteration::awaited(T::address(&instance));
            refcount::incref(coroutine);
            return coroutine;
        }
        // The slot is installed only after `AWAIT_METHOD` was set, by this thread, under the
        // GIL that CPython holds for this call too.
        let method: ffi::unaryfunc = std::mem::transmute(AWAIT_METHOD.load(Ordering::Relaxed));
        method(coroutine)
    }
}

#[cfg(not(all(Py_3_10, not(Py_LIMITED_API), not(Py_GIL_DISABLED))))]
pub(crate) fn install_slot<T: SendSlot>(_py: Python<'_>) {}

/// The type flag a type with `am_send` needs on the running Python: 3.10 only consults the
/// slot on types that say they have it (`Py_TPFLAGS_HAVE_AM_SEND`); later versions always do.
/// Asked at run time, since an abi3 build meets every version.
#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
pub(crate) fn am_send_flag(py: Python<'_>) -> std::ffi::c_ulong {
    if py.version_info() < (3, 11) {
        1 << 21
    } else {
        0
    }
}

/// `next(coroutine)`, which is how `await` resumes it from Python 3.12 on: the `SEND`
/// instruction calls `tp_iternext` to send `None` to anything but a native generator
/// (3.11 called `PyIter_Send`, hence `am_send`). A result travels in `StopIteration`, made
/// at once (no lazy error); a `None` result in no exception at all:
/// `NULL` without one is an iterator's end, which `SEND` and `next()` read as `None`.
///
/// # Safety
/// As for [`am_send`].
#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
pub(crate) unsafe extern "C" fn iternext<T: SendSlot>(
    coroutine: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let mut result = ptr::null_mut();
    // SAFETY: the caller's guarantees; `Py_None` is a valid borrowed value.
    match unsafe { am_send::<T>(coroutine, ffi::Py_None(), &mut result) } {
        ffi::PySendResult::PYGEN_NEXT => result,
        ffi::PySendResult::PYGEN_ERROR => ptr::null_mut(),
        // SAFETY: `result` is the owned result `am_send` returned; `coroutine` a live `T`, as
        // for `am_send`, on an attached thread.
        ffi::PySendResult::PYGEN_RETURN => unsafe {
            // `None` raises nothing: the end of an iterator, read as `None`.
            if result != ffi::Py_None() {
                // The spare serves only `await f()` and `async for`: a coroutine that `await`
                // itself has just claimed, and that its caller alone holds. The caller frees it
                // as soon as it has the result, which empties the spare (see `stop_iteration`).
                let py = Python::assume_attached();
                let address = T::address(&Borrowed::from_ptr(py, coroutine).cast_unchecked::<T>());
                let owner = if ffi::Py_REFCNT(coroutine) == 1 && stop_iteration::is_awaited(address)
                {
                    address
                } else {
                    0
                };
                raise_stop_iteration(result, owner);
            }
            refcount::decref(result);
            ptr::null_mut()
        },
    }
}

/// Raises `StopIteration(result)` for the coroutine at `owner` as a native coroutine's
/// `return` does on the running Python: up to 3.13 chained to the exception being handled
/// (`__context__`), from 3.14 not. Where nothing chains, the exception is the spare
/// (`stop_iteration`).
///
/// # Safety
/// Attached; `result` is a live object (borrowed).
#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
unsafe fn raise_stop_iteration(result: *mut ffi::PyObject, owner: usize) {
    // SAFETY: the caller's guarantees; raising takes the references it is given.
    unsafe {
        if !return_chains() || !handles_an_exception() {
            let stop = stop_iteration::stop_iteration(result, owner);
            if !stop.is_null() {
                #[cfg(Py_3_12)]
                ffi::PyErr_SetRaisedException(stop);
                // A build for older Pythons (the limited API's) runs here on 3.14 too.
                #[cfg(not(Py_3_12))]
                {
                    refcount::incref(ffi::PyExc_StopIteration);
                    ffi::PyErr_Restore(ffi::PyExc_StopIteration, stop, ptr::null_mut());
                }
            }
        } else if ffi::PyTuple_Check(result) == 0 && ffi::PyExceptionInstance_Check(result) == 0 {
            // CPython makes `StopIteration(result)` itself, as cheaply as it can (no argument
            // tuple, which the limited API's calls would need).
            ffi::PyErr_SetObject(ffi::PyExc_StopIteration, result);
        } else {
            // A tuple would be taken for the arguments and an exception raised as itself:
            // `StopIteration(result)` is made here, one argument, as `return` makes it.
            let stop = stop_iteration::new_stop_iteration(result);
            if !stop.is_null() {
                ffi::PyErr_SetObject(ffi::PyExc_StopIteration, stop);
                refcount::decref(stop);
            }
        }
    }
}

/// Whether an exception is being handled, which a `return` up to 3.13 chains its
/// `StopIteration` to. Asked only where it chains; the limited API of 3.10 cannot ask, and
/// answers yes (the exception is then made by `PyErr_SetObject`, which chains).
///
/// # Safety
/// Attached.
#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
unsafe fn handles_an_exception() -> bool {
    #[cfg(all(Py_3_11, not(Py_LIMITED_API)))]
    // SAFETY: attached; the handled exception is a new reference, released here.
    unsafe {
        let handled = ffi::PyErr_GetHandledException();
        let handles = !handled.is_null() && handled != ffi::Py_None();
        ffi::Py_XDECREF(handled);
        handles
    }
    #[cfg(not(all(Py_3_11, not(Py_LIMITED_API))))]
    true
}

/// Whether a coroutine's `StopIteration` is chained to the exception being handled: up to
/// Python 3.13. Known when the build is for one version; under the limited API, read from the
/// running Python when the slots are made (`awaited_slots`), before any can run.
#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
fn return_chains() -> bool {
    #[cfg(not(Py_LIMITED_API))]
    return cfg!(not(Py_3_14));
    #[cfg(Py_LIMITED_API)]
    return RETURN_CHAINS.load(Ordering::Relaxed);
}

#[cfg(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED)))]
static RETURN_CHAINS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// `PyIter_Send` for a coroutine: `PYGEN_NEXT` with the object to yield to the loop,
/// `PYGEN_RETURN` with the result, or `PYGEN_ERROR` with the exception set.
///
/// # Safety
/// Called by CPython only, as the `am_send` of `T`'s class or of its awaited subclass:
/// attached thread, `coroutine` a live `T`, `value` a borrowed reference (or null), `result`
/// writable.
#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
pub(crate) unsafe extern "C" fn am_send<T: SendSlot>(
    coroutine: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
    result: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    let send = |py: Python<'_>| {
        // Borrowed, not counted: CPython holds both references for the call (counting them
        // is a function call each under the limited API).
        // SAFETY: the slot is installed on `T`'s class (which Python code cannot subclass
        // with the full API, nor instantiate under abi3) or on its awaited subclass, whose
        // instances are `T`s: `coroutine` is a live `T`. `value` is a borrowed reference or,
        // from a caller outside the rules, null (read as `None`).
        let coroutine = unsafe { Borrowed::from_ptr(py, coroutine).cast_unchecked::<T>() };
        let value = unsafe { Borrowed::from_ptr_or_opt(py, value) }
            // SAFETY: an upcast: `None` is an object.
            .unwrap_or_else(|| unsafe { PyNone::get(py).cast_unchecked::<PyAny>() });
        Ok(
            match T::send_value(&coroutine, &value).map_err(|err| *err)? {
                Resumed::Yield(yielded) => (ffi::PySendResult::PYGEN_NEXT, yielded.into_ptr()),
                Resumed::Return(output) => (ffi::PySendResult::PYGEN_RETURN, output.into_ptr()),
            },
        )
    };
    // SAFETY: CPython calls this slot on an attached thread (see `slot_entry`).
    let (status, object) =
        unsafe { enter_slot((ffi::PySendResult::PYGEN_ERROR, ptr::null_mut()), send) };
    // SAFETY: `result` is the caller's out-parameter, valid for one write.
    unsafe { *result = object };
    status
}

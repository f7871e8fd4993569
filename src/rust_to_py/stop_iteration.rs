//! The `StopIteration` that carries a coroutine's result out of `tp_iternext`: one is kept and
//! raised again.
//!
//! From Python 3.12, `await` resumes an awaitable that is not a native coroutine through
//! `tp_iternext` (the `SEND` instruction), and a result other than `None` can only come back in
//! a `StopIteration`: `SEND` takes its `value` out and drops it at once. Making and freeing that
//! exception (the object, its argument tuple, the collector's tracking) is about a seventh of
//! awaiting a ready Rust future on 3.14, and of each item of an exported stream. So one is
//! kept (the *spare*), and refilled while nobody else holds it.
//!
//! It serves only `await f()` and each step of `async for`: a coroutine that `await` itself
//! claimed (through the `am_await` slot, [`awaited`]), and that its caller alone holds (a
//! reference count of one when the result comes). That caller frees the coroutine as soon as
//! it has the result, and the coroutine's drop empties the spare ([`forget_result`]). Any other
//! coroutine (held elsewhere too, or stepped by hand with `next()`, where 3.14 may lend a
//! local's reference uncounted) gets an exception of its own, as before. One way around that
//! is known: a tracer that raises between `await`'s claim and its first step (`GET_AWAITABLE`
//! then `SEND`), after which the same coroutine is stepped by hand from a local on 3.14. The
//! spare then keeps that result until the coroutine is freed or the next result comes (bounded:
//! one result; `test_attack_round8`).
//!
//! | the spare is | what it holds | the next result |
//! |---|---|---|
//! | absent | nothing | makes `StopIteration(result)`, which becomes the spare |
//! | raised (the caller has it, this module too) | the result | - |
//! | at rest (only this module holds it, untouched) | `None`, once its coroutine was freed | refills it in place |
//! | held elsewhere, or touched (a traceback, context, cause, `__dict__`, notes, new `args`) | whatever it was given | lets it go and makes a new one |
//!
//! Invariants:
//! - It is refilled only while this module holds the only reference to it and to its argument
//!   tuple, so no code can see it change. A reference count decides whether an allocation is
//!   saved, never what any code observes.
//! - A result's references are the caller's alone once its coroutine is freed, which for the
//!   coroutines served here is right after the caller took the result (`SEND`, then
//!   `END_SEND` frees it), as with a native coroutine.
//! - Should an exception it raised go on into Python code anyway (`next()` by hand on a
//!   coroutine that only the call holds), it is still raised when the coroutine is freed at
//!   the call's end: the drop lets it go then, and no traceback, frame or result is kept.
//! - Its fields are CPython's (`PyStopIterationObject`, public in `cpython/pyerrors.h`, the same
//!   from 3.11 to 3.15; its tuple's, `PyTupleObject`, which caches its hash from 3.14, reset
//!   here when the item changes), read and written directly, under the limited API too. They
//!   are checked once against a `StopIteration` that the running interpreter made; anything
//!   unexpected turns the spare off, and every result then gets an exception of its own.
//! - Only attached threads of an interpreter with a GIL reach it: the GIL orders every access
//!   (the atomics are there to be statics, not for ordering: loads and stores, never a
//!   read-modify-write). Code that a released reference runs (a finalizer) may raise a result
//!   itself: the spare is out of the static meanwhile, and already counted as raised once it
//!   is back.

use std::ffi::c_char;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering::Relaxed};

use pyo3::ffi;
use pyo3::prelude::*;

use crate::refcount;

/// `PyStopIterationObject` from Python 3.11 on (3.11 added `notes`).
#[repr(C)]
struct StopIterationObject {
    head: ffi::PyObject,
    dict: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    notes: *mut ffi::PyObject,
    traceback: *mut ffi::PyObject,
    context: *mut ffi::PyObject,
    cause: *mut ffi::PyObject,
    suppress_context: c_char,
    value: *mut ffi::PyObject,
}

/// The spare (a strong reference), or null.
static SPARE: AtomicPtr<ffi::PyObject> = AtomicPtr::new(ptr::null_mut());
/// The argument tuple the spare was made or refilled with: a spare whose `args` is another
/// object had them replaced, and is let go.
static SPARE_ARGS: AtomicPtr<ffi::PyObject> = AtomicPtr::new(ptr::null_mut());
/// The coroutine that `await` (the `am_await` slot) claimed last (its address).
static AWAITED: AtomicUsize = AtomicUsize::new(0);
/// The coroutine whose result the spare holds (its address), 0 for none.
static OWNER: AtomicUsize = AtomicUsize::new(0);

/// Where a tuple's first item is (`tuple.__basicsize__`), set by the layout check.
static TUPLE_ITEM: AtomicUsize = AtomicUsize::new(0);
/// Where a tuple caches its hash (3.14 on), 0 where it does not: reset to "not computed" when
/// the spare's tuple changes.
static TUPLE_HASH: AtomicUsize = AtomicUsize::new(0);

const UNCHECKED: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;
/// Whether the running interpreter's `StopIteration` is laid out as [`StopIterationObject`].
static LAYOUT: AtomicU8 = AtomicU8::new(UNCHECKED);

/// `StopIteration(result)`, to be raised for the coroutine at `owner` (its address; 0 for a
/// coroutine that someone besides its caller holds, which gets an exception of its own): a new
/// reference, or null with an exception set.
///
/// # Safety
/// Attached, with a GIL; `result` is a live object; a non-zero `owner` is a coroutine that
/// only the caller holds, which empties the spare ([`forget_result`]) when it is freed.
pub(crate) unsafe fn stop_iteration(
    result: *mut ffi::PyObject,
    owner: usize,
) -> *mut ffi::PyObject {
    // SAFETY: the caller's guarantees; the spare is used only once its layout is known.
    unsafe {
        if owner == 0 || !layout_known() {
            return new_stop_iteration(result);
        }
        if let Some(spare) = refill(result, owner) {
            return spare;
        }
        let stop = new_stop_iteration(result);
        if !stop.is_null() {
            keep(stop, owner);
        }
        stop
    }
}

/// Notes that `await` (or `async for`) claimed the coroutine at `address` through the
/// `am_await` slot, to resume it at once. `__await__()` called by hand goes through PyO3's
/// method (the slot's own wrapper under the limited API, see `slot_class`), which does not
/// note it.
#[inline]
pub(crate) fn awaited(address: usize) {
    AWAITED.store(address, Relaxed);
}

/// Whether the coroutine at `address` is the one `await` claimed last.
#[inline]
pub(crate) fn is_awaited(address: usize) -> bool {
    AWAITED.load(Relaxed) == address
}

/// Lets go of the result the spare holds for the coroutine at `owner`, if it does (the
/// coroutine is being freed).
///
/// # Safety
/// Attached, with a GIL, whenever `owner` is the address last given to [`stop_iteration`].
/// Also forgets that `await` claimed it: another coroutine may take its address next.
#[inline]
pub(crate) unsafe fn forget_result(owner: usize) {
    if AWAITED.load(Relaxed) == owner {
        AWAITED.store(0, Relaxed);
    }
    if OWNER.load(Relaxed) == owner {
        // SAFETY: the caller's guarantees (the owner matches: attached).
        unsafe { empty_spare() }
    }
}

#[cold]
unsafe fn empty_spare() {
    OWNER.store(0, Relaxed);
    // SAFETY: attached (see `forget_result`); the spare is refilled only while at rest.
    unsafe {
        let spare = take_spare();
        if spare.is_null() {
            return;
        }
        if !at_rest(spare) {
            refcount::decref(spare);
            return;
        }
        let old = replace_result(spare, ffi::Py_None());
        if !put_back(spare) {
            refcount::decref(spare);
        }
        release(old);
    }
}

/// The spare refilled with `result` (a new reference), if there is one at rest.
unsafe fn refill(result: *mut ffi::PyObject, owner: usize) -> Option<*mut ffi::PyObject> {
    // SAFETY: attached (see `stop_iteration`); the spare is out of the static while it changes.
    unsafe {
        let spare = take_spare();
        if spare.is_null() {
            return None;
        }
        if !at_rest(spare) {
            refcount::decref(spare);
            return None;
        }
        let old = replace_result(spare, result);
        // Raised by the caller (one reference), kept unless a finalizer kept another meanwhile.
        if put_back(spare) {
            refcount::incref(spare);
            OWNER.store(owner, Relaxed);
        }
        release(old);
        Some(spare)
    }
}

/// Keeps `stop`, new and untouched, as the spare, unless a finalizer kept one meanwhile.
unsafe fn keep(stop: *mut ffi::PyObject, owner: usize) {
    // SAFETY: attached; `stop` is a live StopIteration of the checked layout.
    unsafe {
        SPARE_ARGS.store((*stop.cast::<StopIterationObject>()).args, Relaxed);
        if put_back(stop) {
            refcount::incref(stop);
            OWNER.store(owner, Relaxed);
        }
    }
}

/// The spare, out of the static. A load and a store, not a swap: the GIL orders every access,
/// and an atomic read-modify-write would cost more than the rest of a refill.
fn take_spare() -> *mut ffi::PyObject {
    let spare = SPARE.load(Relaxed);
    SPARE.store(ptr::null_mut(), Relaxed);
    spare
}

/// Puts `spare` back in the static if it is empty; `false` (and nothing done) if a finalizer
/// kept another meanwhile.
fn put_back(spare: *mut ffi::PyObject) -> bool {
    if !SPARE.load(Relaxed).is_null() {
        return false;
    }
    SPARE.store(spare, Relaxed);
    true
}

/// Whether only this module holds `spare` and its argument tuple, and nothing was added to it.
unsafe fn at_rest(spare: *mut ffi::PyObject) -> bool {
    // SAFETY: `spare` is live, of the checked layout.
    unsafe {
        let fields = spare.cast::<StopIterationObject>();
        ffi::Py_REFCNT(spare) == 1
            && (*fields).args == SPARE_ARGS.load(Relaxed)
            && ffi::Py_REFCNT((*fields).args) == 1
            && untouched(fields)
    }
}

/// Whether an exception has nothing beyond its arguments and value: no `__dict__`, notes,
/// traceback, context or cause, and its context not suppressed.
unsafe fn untouched(fields: *const StopIterationObject) -> bool {
    // SAFETY: the caller's: a live exception of the checked layout (or being checked).
    unsafe {
        (*fields).dict.is_null()
            && (*fields).notes.is_null()
            && (*fields).traceback.is_null()
            && (*fields).context.is_null()
            && (*fields).cause.is_null()
            && (*fields).suppress_context == 0
    }
}

/// Makes `result` the spare's value and only argument. Returns the old ones, to be released
/// once the spare is consistent again (releasing may run code).
unsafe fn replace_result(
    spare: *mut ffi::PyObject,
    result: *mut ffi::PyObject,
) -> [*mut ffi::PyObject; 2] {
    // SAFETY: `spare` is at rest, of the checked layout: nobody else holds it or its tuple,
    // which has one item, at the checked offset (and its hash cache at the other); `result`
    // is live.
    unsafe {
        let fields = spare.cast::<StopIterationObject>();
        let args = (*fields).args.cast::<u8>();
        let item = args
            .add(TUPLE_ITEM.load(Relaxed))
            .cast::<*mut ffi::PyObject>();
        let hash = TUPLE_HASH.load(Relaxed);
        if hash != 0 {
            *args.add(hash).cast::<ffi::Py_hash_t>() = -1;
        }
        refcount::incref(result);
        refcount::incref(result);
        let old = [(*fields).value, *item];
        (*fields).value = result;
        *item = result;
        // A tuple of untracked items may be untracked by the collector (3.14 makes `(None,)`
        // so); holding a result it must be seen, or a cycle through the result is never freed.
        if result != ffi::Py_None() && ffi::PyObject_GC_IsTracked((*fields).args) == 0 {
            ffi::PyObject_GC_Track((*fields).args.cast());
        }
        old
    }
}

/// Releases what [`replace_result`] returned.
unsafe fn release(old: [*mut ffi::PyObject; 2]) {
    // SAFETY: two references the spare held.
    unsafe {
        refcount::decref(old[0]);
        refcount::decref(old[1]);
    }
}

/// Whether the spare can be used: checked once, by the first result.
#[inline]
fn layout_known() -> bool {
    match LAYOUT.load(Relaxed) {
        ON => true,
        OFF => false,
        _ => check_layout(),
    }
}

/// Checks [`StopIterationObject`] and the tuple's item (and hash cache) against what the
/// running interpreter makes: the sizes of both classes, then a `StopIteration(sentinel)` read
/// through them. Python 3.12 to 3.14 (where `await` needs the exception; 3.10 had no `notes`;
/// 3.15 not yet).
#[cold]
fn check_layout() -> bool {
    // SAFETY: attached (every caller of `stop_iteration` is). Fields are read only once the
    // class's instance size is this layout's; the probe's tuple has one item, so its first
    // item ends its allocation; a hash cache is read only inside its fixed part.
    let fits = unsafe {
        let py = Python::assume_attached();
        let size_of = |class: *mut ffi::PyObject| {
            Borrowed::from_ptr(py, class)
                .getattr(pyo3::intern!(py, "__basicsize__"))
                .and_then(|size| size.extract::<usize>())
                .unwrap_or(0)
        };
        let exception_size = size_of(ffi::PyExc_StopIteration);
        let tuple_size = size_of(ptr::addr_of_mut!(ffi::PyTuple_Type).cast());
        // A hashable object that nothing else holds: the probe's value and argument.
        let sentinel = ffi::PyLong_FromLongLong(1 << 40);
        let probe = if sentinel.is_null() {
            ptr::null_mut()
        } else {
            new_stop_iteration(sentinel)
        };
        let header = std::mem::size_of::<ffi::PyVarObject>();
        let fits = !cfg!(PyPy)
            && py.version_info() >= (3, 12)
            // 3.15, a pre-release here, reports no exception event for a `StopIteration` at
            // `SEND`, so the tests cannot watch the spare there: off until they can.
            && py.version_info() < (3, 15)
            && exception_size == std::mem::size_of::<StopIterationObject>()
            && (tuple_size == header || tuple_size == header + 8)
            && !probe.is_null()
            && ffi::Py_TYPE(probe) == ffi::PyExc_StopIteration.cast()
            && {
                let fields = probe.cast::<StopIterationObject>();
                let args = (*fields).args;
                (*fields).value == sentinel
                    && ffi::PyTuple_Check(args) != 0
                    && ffi::PyTuple_Size(args) == 1
                    && ffi::PyTuple_GetItem(args, 0) == sentinel
                    && *args
                        .cast::<u8>()
                        .add(tuple_size)
                        .cast::<*mut ffi::PyObject>()
                        == sentinel
                    && untouched(fields)
                    && (tuple_size == header || {
                        // The word after the header is the hash cache: "not computed" in a new
                        // tuple, the hash once computed.
                        let cache = args.cast::<u8>().add(header).cast::<ffi::Py_hash_t>();
                        *cache == -1 && {
                            let hash = ffi::PyObject_Hash(args);
                            hash != -1 && *cache == hash
                        }
                    })
            };
        ffi::Py_XDECREF(probe);
        ffi::Py_XDECREF(sentinel);
        ffi::PyErr_Clear();
        if fits {
            TUPLE_ITEM.store(tuple_size, Relaxed);
            TUPLE_HASH.store(if tuple_size == header { 0 } else { header }, Relaxed);
        }
        fits
    };
    LAYOUT.store(if fits { ON } else { OFF }, Relaxed);
    fits
}

/// `StopIteration(result)`, a new reference (null with an exception set if that failed).
///
/// # Safety
/// Attached; `result` is a live object.
pub(crate) unsafe fn new_stop_iteration(result: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: the caller's guarantees; the argument tuple is released after the call.
    unsafe {
        #[cfg(not(Py_LIMITED_API))]
        return ffi::PyObject_CallOneArg(ffi::PyExc_StopIteration, result);
        #[cfg(Py_LIMITED_API)]
        {
            let arguments = ffi::PyTuple_Pack(1, result);
            if arguments.is_null() {
                return ptr::null_mut();
            }
            let stop = ffi::PyObject_Call(ffi::PyExc_StopIteration, arguments, ptr::null_mut());
            ffi::Py_DECREF(arguments);
            stop
        }
    }
}

//! Reference counts taken and released inline, in the limited-API (abi3) build too.
//!
//! Under the limited API, PyO3 counts references through calls into the interpreter
//! (`_Py_IncRef`, `_Py_DecRef`). CPython's own headers do not, for an extension built against
//! the limited API of 3.10 or 3.11, as this crate's abi3 build is (`abi3-py310`): they write
//! the count inline, and every CPython that loads such an extension accepts that code, since
//! it is part of the stable ABI's contract. The two functions here are those inline operations,
//! written as CPython 3.14's headers write them for such an extension (64-bit, with the GIL):
//!
//! | operation | what it does |
//! |---|---|
//! | [`incref`] | reads the low 32 bits of `ob_refcnt`; at `3 << 30` or more the object is immortal (3.12+) or, before 3.12, holds over three billion references: left as it is; else the low 32 bits get one more |
//! | [`decref`] | reads the low 32 bits as a signed number; negative: immortal, left as it is; else they get one less, and the object is deallocated (`_Py_Dealloc`) at zero |
//!
//! The hot paths of `await` and `async for` (`send_slot`, `stop_iteration`, `slot_class`) use
//! them: a ready `await` took six calls of each kind, and counting inline there made it 5–10 %
//! faster under the limited API on 3.14 (240 ns → 217–227). Everything else, and every other build (the full API, where PyO3's own
//! are inline already; free-threaded Python, PyPy, GraalPy and 32-bit targets, whose counts
//! are not these fields), goes through PyO3's `Py_INCREF`/`Py_DECREF`.
//!
//! Invariant: the caller is attached (holds the GIL): no other thread reads or writes a count
//! meanwhile, as for CPython's inline code.

// The free-threaded build has none of the slots that use them.
#![cfg_attr(Py_GIL_DISABLED, allow(dead_code))]

use pyo3::ffi;

/// Each item of `inline` is compiled where the limited API's inline counting applies
/// (CPython with the GIL, 64-bit), each of `pyo3` everywhere else.
macro_rules! counting {
    (inline { $($inline:item)* } pyo3 { $($pyo3:item)* }) => {
        $(
            #[cfg(all(Py_LIMITED_API, not(any(Py_GIL_DISABLED, PyPy, GraalPy)), target_pointer_width = "64"))]
            $inline
        )*
        $(
            #[cfg(not(all(Py_LIMITED_API, not(any(Py_GIL_DISABLED, PyPy, GraalPy)), target_pointer_width = "64")))]
            $pyo3
        )*
    };
}

counting! {
    inline {
        // CPython's deallocation of an object whose count reached zero, which its headers call
        // from an inline `Py_DECREF` (part of the stable ABI for that reason; pyo3-ffi keeps its
        // declaration private).
        extern "C" {
            fn _Py_Dealloc(object: *mut ffi::PyObject);
        }

        /// At this count (the low 32 bits) and above, an object's count no longer moves: immortal
        /// objects start here from 3.14, and sit above it on 3.12 and 3.13 (`0xFFFF_FFFF`).
        const IMMORTAL_INITIAL: u32 = 3 << 30;

        /// The low 32 bits of `ob_refcnt`, the first field of every object.
        #[inline(always)]
        fn low_count(object: *mut ffi::PyObject) -> *mut u32 {
            let offset = if cfg!(target_endian = "big") { 1 } else { 0 };
            // SAFETY (of the callers' use): `ob_refcnt` is a `Py_ssize_t` at the start of the
            // object on every CPython with the GIL, the 64-bit ones here: its low half is
            // in bounds and aligned for `u32`.
            object.cast::<u32>().wrapping_add(offset)
        }

        /// `Py_INCREF`.
        ///
        /// # Safety
        /// Attached; `object` is a live object.
        #[inline(always)]
        pub(crate) unsafe fn incref(object: *mut ffi::PyObject) {
            let count = low_count(object);
            // SAFETY: the caller's guarantees (see `low_count` for the field); the GIL keeps
            // other threads off the count.
            unsafe {
                let current = count.read();
                if current < IMMORTAL_INITIAL {
                    count.write(current + 1);
                }
            }
        }

        /// `Py_DECREF`.
        ///
        /// # Safety
        /// Attached; `object` is a live object, and the reference released was owned.
        #[inline(always)]
        pub(crate) unsafe fn decref(object: *mut ffi::PyObject) {
            let count = low_count(object);
            // SAFETY: the caller's guarantees; at zero the last reference went, which was the
            // caller's: the object is deallocated as CPython's `Py_DECREF` deallocates it.
            unsafe {
                let current = count.read();
                if (current as i32) < 0 {
                    return;
                }
                count.write(current - 1);
                if current == 1 {
                    _Py_Dealloc(object);
                }
            }
        }
    }

    pyo3 {
        /// `Py_INCREF`.
        ///
        /// # Safety
        /// Attached; `object` is a live object.
        #[inline(always)]
        pub(crate) unsafe fn incref(object: *mut ffi::PyObject) {
            // SAFETY: the caller's guarantees.
            unsafe { ffi::Py_INCREF(object) }
        }

        /// `Py_DECREF`.
        ///
        /// # Safety
        /// Attached; `object` is a live object, and the reference released was owned.
        #[inline(always)]
        pub(crate) unsafe fn decref(object: *mut ffi::PyObject) {
            // SAFETY: the caller's guarantees.
            unsafe { ffi::Py_DECREF(object) }
        }
    }
}

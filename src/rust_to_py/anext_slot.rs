//! The `am_anext` slot: how `async for` asks an [`AsyncGenerator`](crate::AsyncGenerator) for
//! each item.
//!
//! `async for` calls the slot once per item. PyO3's trampoline around `__anext__` attaches
//! (counting the attach in a thread-local), catches panics and detaches again, which costs
//! about as much as making the item's step itself. The step is made the same way here, on the
//! thread CPython calls the slot on, which is attached. With the full API the slot is filled in
//! once the class exists, as `send_slot` fills in `Coroutine`'s; under the limited API,
//! `__aiter__` moves the generator into a subclass that has it (`slot_class`). The method
//! stays for explicit calls.

use pyo3::prelude::*;
use pyo3::PyClass;

/// A class whose instances `async for` steps through `am_anext`.
pub(crate) trait AnextSlot: PyClass {
    /// `__anext__()`: the awaitable of the next item, as a Python object.
    #[cfg_attr(not(all(Py_3_10, not(Py_GIL_DISABLED))), allow(dead_code))]
    fn next_step(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>>;
}

#[cfg(all(Py_3_10, not(Py_LIMITED_API), not(Py_GIL_DISABLED)))]
pub(crate) fn install_slot<T: AnextSlot>(py: Python<'_>) {
    let class = py.get_type::<T>();
    let class = class.as_type_ptr();
    // SAFETY: as in `send_slot::install_slot`: the live heap type PyO3 made, whose embedded
    // async slot table is non-null (it has `__anext__`); the GIL keeps readers out meanwhile.
    unsafe {
        if let Some(slots) = (*class).tp_as_async.as_mut() {
            if slots.am_anext.is_some() {
                slots.am_anext = Some(am_anext::<T>);
                pyo3::ffi::PyType_Modified(class);
            }
        }
    }
}

#[cfg(not(all(Py_3_10, not(Py_LIMITED_API), not(Py_GIL_DISABLED))))]
pub(crate) fn install_slot<T: AnextSlot>(_py: Python<'_>) {}

/// The slots of `T`'s iterated class under the limited API (see `slot_class`).
#[cfg(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED)))]
pub(crate) fn iterated_slots<T: AnextSlot>() -> [(std::ffi::c_int, *mut std::ffi::c_void); 1] {
    [(
        pyo3::ffi::Py_am_anext,
        am_anext::<T> as *mut std::ffi::c_void,
    )]
}

/// `generator.__anext__()`, as `async for` calls it.
#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
unsafe extern "C" fn am_anext<T: AnextSlot>(
    generator: *mut pyo3::ffi::PyObject,
) -> *mut pyo3::ffi::PyObject {
    // SAFETY: CPython calls the slot on an attached thread with a live `T` (the slot is on
    // `T`'s class or on its iterated subclass), which it holds for the call: borrowed, not
    // counted. The token does not outlive the call. The step, handed to CPython, drops
    // nothing; only a failed allocation drops it here, and then the one Python reference it
    // held (its generator's) is released at the thread's next attach, PyO3 not knowing of
    // this one.
    unsafe {
        let py = Python::assume_attached();
        let generator = Borrowed::from_ptr(py, generator).cast_unchecked::<T>();
        let made =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| T::next_step(&generator)));
        match made {
            Ok(Ok(step)) => step.into_ptr(),
            Ok(Err(err)) => {
                err.restore(py);
                std::ptr::null_mut()
            }
            Err(payload) => {
                crate::rust_to_py::panic::panic_exception(payload).restore(py);
                std::ptr::null_mut()
            }
        }
    }
}

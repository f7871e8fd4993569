//! The `am_anext` slot of [`AsyncGenerator`]: how `async for` asks for each item.
//!
//! `async for` calls the slot once per item. PyO3's trampoline around `__anext__` attaches
//! (counting the attach in a thread-local), catches panics and detaches again, which costs
//! about as much as making the item's step itself. The step is made the same way here, on the
//! thread CPython calls the slot on, which is attached: the slot is filled in once the class
//! exists, as `send_slot` fills in `Coroutine`'s, and the method stays for explicit calls.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;

#[cfg(all(Py_3_10, not(Py_LIMITED_API), not(Py_GIL_DISABLED)))]
use crate::rust_to_py::async_generator::AsyncGenerator;

/// Whether `AsyncGenerator`'s `am_anext` slot is filled in.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Fills in the slot, once per process; cheap to call on every `__anext__`.
pub(crate) fn install(py: Python<'_>) {
    if INSTALLED.load(Ordering::Relaxed) {
        return;
    }
    install_slot(py);
    INSTALLED.store(true, Ordering::Relaxed);
}

#[cfg(all(Py_3_10, not(Py_LIMITED_API), not(Py_GIL_DISABLED)))]
fn install_slot(py: Python<'_>) {
    let class = py.get_type::<AsyncGenerator>();
    let class = class.as_type_ptr();
    // SAFETY: as in `send_slot::install_slot`: the live heap type PyO3 made, whose embedded
    // async slot table is non-null (it has `__anext__`); the GIL keeps readers out meanwhile.
    unsafe {
        if let Some(slots) = (*class).tp_as_async.as_mut() {
            if slots.am_anext.is_some() {
                slots.am_anext = Some(am_anext);
                pyo3::ffi::PyType_Modified(class);
            }
        }
    }
}

#[cfg(not(all(Py_3_10, not(Py_LIMITED_API), not(Py_GIL_DISABLED))))]
fn install_slot(_py: Python<'_>) {}

/// `generator.__anext__()`, as `async for` calls it.
#[cfg(all(Py_3_10, not(Py_LIMITED_API), not(Py_GIL_DISABLED)))]
unsafe extern "C" fn am_anext(generator: *mut pyo3::ffi::PyObject) -> *mut pyo3::ffi::PyObject {
    // SAFETY: CPython calls the slot on an attached thread with a live `AsyncGenerator` (the
    // class has no subclasses). The token does not outlive the call. The step, handed to
    // CPython, drops nothing; only a failed allocation drops it here, and then the one Python
    // reference it held (its generator's) is released at the thread's next attach, PyO3 not
    // knowing of this one.
    unsafe {
        let py = Python::assume_attached();
        let generator = Bound::from_borrowed_ptr(py, generator).cast_into_unchecked();
        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Bound::new(py, AsyncGenerator::next_step(&generator))
        }));
        match made {
            Ok(Ok(step)) => step.into_any().into_ptr(),
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

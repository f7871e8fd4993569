//! How the crate's classes report their Python references to the cyclic collector: through
//! PyO3's `__traverse__`, or straight from the type's `tp_traverse` slot.
//!
//! Why two ways: a parked coroutine and the future its task waits on are traversed at every
//! collection of their generation, and PyO3's trampoline around `__traverse__` (a thread-local
//! guard, a search of the base classes for the one that visits the type, under the limited API
//! through `PyType_GetSlot`) costs several times what the visit itself does. The slot version,
//! [`tp_traverse`], does what the trampoline does for a frozen class that Python code cannot
//! subclass, and nothing else; the traversal code itself is written once, generic over
//! [`Visit`].

#[cfg(not(any(Py_GIL_DISABLED, PyPy)))]
use std::ffi::{c_int, c_void};

#[cfg(not(any(Py_GIL_DISABLED, PyPy)))]
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::{PyClass, PyTraverseError, PyVisit};

/// A visitor of Python references: PyO3's [`PyVisit`], or the collector's own ([`RawVisit`]).
pub(crate) trait Visit {
    type Error;

    /// Reports one reference; an error stops the traversal (the collector's answer).
    fn visit<T>(&self, object: &Py<T>) -> Result<(), Self::Error>;
}

impl Visit for PyVisit<'_> {
    type Error = PyTraverseError;

    fn visit<T>(&self, object: &Py<T>) -> Result<(), PyTraverseError> {
        self.call(object)
    }
}

/// The collector's `visitproc` and its argument, as `tp_traverse` receives them.
#[cfg(not(any(Py_GIL_DISABLED, PyPy)))]
pub(crate) struct RawVisit {
    visit: ffi::visitproc,
    arg: *mut c_void,
}

#[cfg(not(any(Py_GIL_DISABLED, PyPy)))]
impl Visit for RawVisit {
    type Error = c_int;

    fn visit<T>(&self, object: &Py<T>) -> Result<(), c_int> {
        self.visit_ptr(object.as_ptr())
    }
}

#[cfg(not(any(Py_GIL_DISABLED, PyPy)))]
impl RawVisit {
    fn visit_ptr(&self, object: *mut ffi::PyObject) -> Result<(), c_int> {
        // SAFETY: `visit` and `arg` are the pair the collector passed to `tp_traverse`, which
        // is still running; `object` is alive (a reference the traversed object holds).
        match unsafe { (self.visit)(object, self.arg) } {
            0 => Ok(()),
            stop => Err(stop),
        }
    }
}

/// A frozen class whose references [`tp_traverse`] reports.
pub(crate) trait Traverse: PyClass<Frozen = True> + Sync {
    /// Reports what the object holds. Runs inside the collector: no Python code, no
    /// reference count changed, no lock waited for.
    fn traverse<V: Visit>(&self, visit: &V) -> Result<(), V::Error>;
}

/// `tp_traverse` for `T`: the object's class (an instance of a heap type holds it), then what
/// [`Traverse::traverse`] reports.
///
/// # Safety
/// Installed only as the `tp_traverse` of `T`'s class or of a subclass with `T`'s layout that
/// Python code cannot subclass further (a Python subclass would need its own `__dict__` and
/// slots visited); called by the collector with a live instance, on an attached thread.
#[cfg(not(any(Py_GIL_DISABLED, PyPy)))]
pub(crate) unsafe extern "C" fn tp_traverse<T: Traverse>(
    object: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    let visitor = RawVisit { visit, arg };
    // SAFETY: a live instance of `T`'s layout (the caller's guarantee), which holds its
    // class. The collector runs attached, so the token is sound; it is used for one borrow
    // that changes no reference count and runs no Python code.
    let visited = unsafe {
        visitor
            .visit_ptr(ffi::Py_TYPE(object).cast())
            .and_then(|()| {
                let py = Python::assume_attached();
                let instance = pyo3::Borrowed::from_ptr(py, object).cast_unchecked::<T>();
                instance.get().traverse(&visitor)
            })
    };
    visited.err().unwrap_or(0)
}

/// Puts [`tp_traverse`] in `T`'s class in place of PyO3's (full API; see the module).
///
/// Both report the same references, so instances made before the switch are traversed
/// correctly either way.
#[cfg(not(any(Py_LIMITED_API, Py_GIL_DISABLED, PyPy)))]
pub(crate) fn install_tp_traverse<T: Traverse>(py: Python<'_>) {
    let class = py.get_type::<T>();
    let class = class.as_type_ptr();
    // SAFETY: the live, initialised heap type PyO3 made for `T`, which has a traversal (it is
    // collected) and which Python code cannot subclass (`Traverse`'s contract); the GIL keeps
    // other threads out while the slot is written, and no collection runs meanwhile (this
    // thread is in Rust code, not in the collector).
    unsafe {
        (*class).tp_traverse = Some(tp_traverse::<T>);
        ffi::PyType_Modified(class);
    }
}

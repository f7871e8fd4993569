//! The type slots of `Coroutine` that PyO3 cannot declare (`send_slot`), under the limited
//! API the awaited class that carries them (`slot_class`), and how a coroutine becomes a
//! Python object: in that class at once.

use pyo3::prelude::*;

use crate::install_once::InstallOnce;
use crate::rust_to_py::coroutine::Coroutine;
use crate::rust_to_py::driver::Stepped;
use crate::rust_to_py::send_slot::{self, SendSlot};

/// Every coroutine handed to Python, whoever returns it (an exported function, a plain
/// `#[pyfunction]`, a method such as `aclose`, `into_pyobject` by hand): made where `await`
/// finds the fast slots. Under the limited API that is the awaited class, entered here rather
/// than by PyO3's `__await__`, which cannot tell `await` from a call by hand and so cannot
/// note the claim that lets a result reuse the spare `StopIteration` (`stop_iteration`).
/// `Bound::new` (PyO3's own path) still works: the first `await` moves the coroutine then.
impl<'py> IntoPyObject<'py> for Coroutine {
    type Target = Coroutine;
    type Output = Bound<'py, Coroutine>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, Coroutine>> {
        // The slots are in place before the first `await` too: a task given the coroutine
        // directly (`asyncio.ensure_future`) resumes it through `am_send` from its first step.
        Coroutine::install_slots(py);
        let coroutine = Bound::new(py, self)?;
        Coroutine::enter_awaited_class(&coroutine)?;
        Ok(coroutine)
    }
}

/// `Coroutine`'s `am_send`, `am_await` and `tp_traverse` slots, filled in once (full API).
static SLOTS: InstallOnce = InstallOnce::new();

impl Coroutine {
    /// Fills in the slots, once per process; cheap to call on every await.
    pub(crate) fn install_slots(py: Python<'_>) {
        SLOTS.run(|| {
            send_slot::install_slot::<Coroutine>(py);
            #[cfg(not(any(Py_LIMITED_API, Py_GIL_DISABLED, PyPy)))]
            crate::visit::install_tp_traverse::<Coroutine>(py);
        });
    }

    /// Under the limited API, moves the coroutine into the class that has the slots.
    #[cfg(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED)))]
    pub(crate) fn enter_awaited_class(slf: &Bound<'_, Self>) -> PyResult<()> {
        use crate::lazy::Lazy;
        use pyo3::types::PyType;

        use crate::rust_to_py::slot_class;

        static AWAITED_CLASS: Lazy<Py<PyType>> = Lazy::new();
        let py = slf.py();
        let class = AWAITED_CLASS.get_or_try_init(py, || {
            let base = py.get_type::<Coroutine>();
            let traverse = crate::visit::tp_traverse::<Coroutine>;
            let slots = send_slot::awaited_slots::<Coroutine>(&base);
            let slots: Vec<_> = slots
                .into_iter()
                .chain([(pyo3::ffi::Py_tp_traverse, traverse as *mut std::ffi::c_void)])
                .collect();
            slot_class::subclass(
                &base,
                c"pyo3_async.Coroutine",
                &slots,
                send_slot::am_send_flag(py),
            )
        })?;
        // SAFETY: the class was made from `Coroutine`'s, and `slf` is a `Coroutine`.
        unsafe { slot_class::move_into(slf.as_any(), class) };
        Ok(())
    }

    /// Who a result raised in the spare `StopIteration` belongs to (`stop_iteration`): the
    /// value's address, stable inside its Python object.
    pub(crate) fn address(&self) -> usize {
        self as *const Self as usize
    }

    /// With the full API, the class itself has the slots.
    #[cfg(not(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED))))]
    pub(crate) fn enter_awaited_class(_slf: &Bound<'_, Self>) -> PyResult<()> {
        Ok(())
    }
}

impl SendSlot for Coroutine {
    fn send_value(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> Stepped {
        let py = slf.py();
        slf.get()
            .resume(py, |driver, owner| driver.send(py, owner, value))
    }

    /// As `__await__` marks it (see `MarkedLabel::claim`).
    fn claim_for_await(slf: &Bound<'_, Self>) -> bool {
        slf.get().label.claim()
    }

    fn address(slf: &Bound<'_, Self>) -> usize {
        slf.get().address()
    }
}

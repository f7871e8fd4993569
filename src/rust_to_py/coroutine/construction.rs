//! How a coroutine is put together: the one allocation its driver and future share, and the
//! crate's own settings of a coroutine still owned by Rust code.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::backend::Backend;
use crate::rust_to_py::cancel_handle::Cancellation;
use crate::rust_to_py::coroutine::Coroutine;
use crate::rust_to_py::driver::shared::Shared;
use crate::rust_to_py::driver::Driver;
use crate::rust_to_py::future_cell::DriverFlags;
use crate::rust_to_py::label::MarkedLabel;
use crate::rust_to_py::pollable::PyPoll;

impl Coroutine {
    /// The one constructor: the driver and the future share one allocation.
    #[inline]
    pub(crate) fn from_pollable<P: PyPoll + 'static>(
        future: P,
        cancellation: Option<Arc<Cancellation>>,
        backend: Option<Backend>,
    ) -> Self {
        Self::from_driver(Driver::new(future, cancellation, backend))
    }

    /// An async generator's step: quiet from the start (see `without_unawaited_warning`),
    /// with no borrow of a driver already shared, and awaitable again until it finished
    /// (`DriverFlags::STEP`).
    #[inline]
    pub(crate) fn quiet_step<P: PyPoll + 'static>(step: P, backend: Option<Backend>) -> Self {
        let mut driver = Driver::new(step, None, backend);
        driver
            .flags()
            .set(DriverFlags::QUIET | DriverFlags::STEP, true);
        Self::from_driver(driver)
    }

    #[inline]
    fn from_driver<P: PyPoll + 'static>(driver: Driver<P>) -> Self {
        let driver: Arc<Shared<P>> = Arc::new(Shared::new(driver));
        Coroutine {
            label: MarkedLabel::new(),
            driver,
        }
    }

    /// Changes the driver of a coroutine being built (owned by Rust code, so the driver's
    /// only owner: no borrow, no `Python` token).
    pub(super) fn configure(&mut self, change: impl FnOnce(&mut Driver)) {
        match Arc::get_mut(&mut self.driver) {
            Some(shared) => change(shared.get_mut()),
            // Unreachable: only a poll shares the driver, and only Python polls a coroutine,
            // which it holds by reference.
            None => Python::attach(|py| {
                if let Some(mut driver) = self.driver.cell().try_borrow_mut(py) {
                    change(&mut driver);
                }
            }),
        }
    }

    /// A coroutine that is dropped unawaited in silence: an internal step that Python code
    /// may legitimately never await.
    pub(crate) fn without_unawaited_warning(mut self) -> Self {
        self.configure(|driver| driver.flags().set(DriverFlags::QUIET, true));
        self
    }
}

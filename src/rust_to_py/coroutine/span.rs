//! The `tracing` span entered around a coroutine's resumptions (feature `tracing`; the spans
//! themselves are `poll_span`'s).

use std::sync::Arc;

use pyo3::prelude::*;

use crate::rust_to_py::coroutine::Coroutine;
use crate::rust_to_py::driver::Driver;

impl Coroutine {
    /// The span to enter around a resumption: made at the first one (inside the task that
    /// runs the coroutine, whose loop and name it records), unless a generator gave its own.
    pub(super) fn span(&self, py: Python<'_>, driver: &mut Driver) -> tracing::Span {
        let span = driver.span.get_or_insert_with(|| {
            let span = crate::rust_to_py::poll_span::coroutine(self.__qualname__());
            crate::rust_to_py::poll_span::record_task(py, &span);
            span
        });
        span.clone()
    }

    /// A step of a generator runs in the generator's span.
    pub(crate) fn in_span(mut self, span: &tracing::Span) -> Self {
        // Owned, so never resumed: only a resumption shares the driver (with its loop's home).
        if let Some(driver) = Arc::get_mut(&mut self.driver) {
            driver.get_mut().span = Some(span.clone());
        }
        self
    }
}

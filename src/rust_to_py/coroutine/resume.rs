//! One step of a coroutine (`send`, `throw`, `close` through the driver): what happens around
//! it, once the driver has moved: registration with the loop's home, the count of suspended
//! coroutines, the `tracing` span, the traceback entry of an error; and how the step's outcome
//! reaches a caller of `send` or `__next__`.

use std::sync::Arc;

use pyo3::exceptions::{PyStopIteration, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;

use crate::census;
use crate::gil_cell::GilGuard;
use crate::rust_to_py::coroutine::Coroutine;
use crate::rust_to_py::driver::{Driver, Owner, Resumed, Stepped};
use crate::rust_to_py::errors::made;

impl Coroutine {
    /// Runs `step` on the driver; an exception of the Rust function leaving it gets the
    /// function's frame (a cancellation passing through does not: it is not the function's,
    /// and building frames for 100k cancelled coroutines is what made cancelling slow).
    pub(crate) fn resume(
        &self,
        py: Python<'_>,
        step: impl FnOnce(&mut Driver, &Owner) -> Stepped,
    ) -> Stepped {
        let mut driver = self.driver(py)?;
        #[cfg(feature = "tracing")]
        let span = self.span(py, &mut driver);
        #[cfg(feature = "tracing")]
        let _entered = span.enter();
        let resumed = step(&mut driver, &self.driver);
        if driver.started() {
            self.label.set_started();
        }
        if let Some(home) = driver.home_to_register() {
            // Bound to a loop for the first time: the loop's death finishes the coroutine.
            home.depend(py, Arc::clone(&self.driver).dependent());
            driver.set_registered();
            census::SUSPENDED_COROUTINES.add();
        }
        let rethrown = driver.take_rethrown();
        drop(driver);
        match resumed {
            Err(err) if !rethrown => Err(Box::new(chain_to_handled(
                py,
                self.locate(py, made(py, *err)),
            ))),
            resumed => resumed,
        }
    }

    /// The driver, unless a `send`/`throw`/`close` of this coroutine is already running (the
    /// future re-entered its own coroutine, or another thread drives it meanwhile).
    pub(super) fn driver(&self, py: Python<'_>) -> PyResult<GilGuard<'_, Driver>> {
        self.driver
            .cell()
            .try_borrow_mut(py)
            .ok_or_else(|| PyValueError::new_err("coroutine already executing"))
    }
}

/// As `raise` inside an `except` block chains it: the exception being handled where the
/// coroutine was resumed becomes `err`'s `__context__` (an error the Rust function made
/// itself is chained by CPython as it is raised; one it returns already made, such as an
/// exception caught from Python code, is not). A chain that would lead back to `err` is cut
/// where it does, as CPython cuts it.
fn chain_to_handled(py: Python<'_>, err: PyErr) -> PyErr {
    let handled = crate::glue::exc_info(py)
        .and_then(|exc_info| exc_info.call0())
        .and_then(|info| info.get_item(1));
    let Ok(handled) = handled else {
        return err;
    };
    let value = err.value(py);
    if handled.is_none() || handled.is(value) {
        return err;
    }
    let context = intern!(py, "__context__");
    let mut link = handled.clone();
    // Bounded: a chain that loops without `err` in it is Python code's doing, not ours.
    for _ in 0..1000 {
        match link.getattr(context) {
            Ok(next) if next.is(value) => {
                let _ = link.setattr(context, py.None());
                break;
            }
            Ok(next) if !next.is_none() => link = next,
            _ => break,
        }
    }
    let _ = value.setattr(context, handled);
    err
}

impl Resumed {
    /// As a generator's `send` reports it: the result travels in `StopIteration`.
    pub(super) fn into_next(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self {
            Resumed::Yield(yielded) => Ok(yielded),
            // `None` as `return` gives it: `StopIteration()`, no arguments.
            Resumed::Return(output) if output.is_none(py) => Err(PyStopIteration::new_err(())),
            Resumed::Return(output) => Err(PyStopIteration::new_err((output,))),
        }
    }
}

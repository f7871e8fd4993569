//! What a Rust panic becomes in the Python code that awaited it.
//!
//! PyO3's own `PanicException` derives from `BaseException`, on purpose: a panic is a bug, and
//! PyO3 wants it to end the program rather than be swallowed by `except Exception`. In an async
//! server that is the wrong trade. A request handler that awaits a panicking Rust future raises
//! a `BaseException` through the framework's error handling (which catches `Exception`), and
//! trio and anyio treat a `BaseException` escaping a task as fatal to the whole task group: one
//! bad request took a hypercorn server on trio down for every later client. asyncio servers
//! happen to survive it; a panic costing one request must not depend on the loop.
//!
//! So a panic inside a Rust future or stream driven by Python raises [`PanicError`], an
//! `Exception` subclass carrying the panic's message: the framework answers that request with
//! a 500 and serves the next one. The panic is still printed by Rust's panic hook where it
//! happened. A program that wants PyO3's behaviour (a panic stops everything) asks for it with
//! [`set_panic_style`]`(`[`PanicStyle::PyO3`]`)`.
//!
//! Panics in the synchronous part of an exported function (before the coroutine exists) are
//! PyO3's to report, as `PanicException`.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::panic::PanicException;
use pyo3::prelude::*;

pyo3::create_exception!(
    pyo3_async,
    PanicError,
    pyo3::exceptions::PyException,
    "A Rust future or stream awaited from Python panicked; `args[0]` is the panic's message.\n\n\
     An `Exception`, so that a framework's error handling contains it to the request that hit \
     it (see `pyo3_async::set_panic_style` for PyO3's `BaseException` instead)."
);

/// What a panic of a Rust future or stream raises in Python: see [`set_panic_style`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PanicStyle {
    /// [`PanicError`], an `Exception`: contained by `except Exception`, frameworks and task
    /// groups like any other failure. The default.
    #[default]
    Exception,
    /// PyO3's `pyo3_runtime.PanicException`, a `BaseException`: it escapes `except Exception`
    /// and ends a trio or anyio task group, as panics in PyO3's own functions do.
    PyO3,
}

/// Whether panics raise PyO3's `PanicException`.
static PYO3_STYLE: AtomicBool = AtomicBool::new(false);

/// Chooses, for the whole process, what a panic of a Rust future or stream driven by Python
/// raises (see [`PanicStyle`]); it applies to panics from then on.
///
/// ```
/// use pyo3::prelude::*;
/// use pyo3_async::{Coroutine, PanicError, PanicStyle};
///
/// /// What awaiting a Rust future that panics raises.
/// fn raised(py: Python<'_>) -> PyResult<PyErr> {
///     let failing = Coroutine::new(async {
///         if true {
///             panic!("a bug");
///         }
///         PyResult::Ok(())
///     });
///     let failing = Py::new(py, failing)?.into_bound(py);
///     Ok(failing.call_method1("send", (py.None(),)).unwrap_err())
/// }
///
/// Python::initialize();
/// Python::attach(|py| {
///     // The default: an `Exception` that `except Exception` catches.
///     let err = raised(py)?;
///     assert!(err.is_instance_of::<PanicError>(py));
///     assert!(err.is_instance_of::<pyo3::exceptions::PyException>(py));
///     assert_eq!(err.value(py).to_string(), "a bug");
///
///     // PyO3's style. (Rust code that gets a `PanicException` back from Python — here,
///     // from `send` — panics again, by PyO3's design: Python code sees it as raised.)
///     pyo3_async::set_panic_style(PanicStyle::PyO3);
///     assert_eq!(pyo3_async::panic_style(), PanicStyle::PyO3);
///     pyo3_async::set_panic_style(PanicStyle::Exception);
///     PyResult::Ok(())
/// })
/// # .unwrap();
/// ```
pub fn set_panic_style(style: PanicStyle) {
    PYO3_STYLE.store(style == PanicStyle::PyO3, Ordering::Relaxed);
}

/// The panic style in force.
///
/// ```
/// assert_eq!(pyo3_async::panic_style(), pyo3_async::PanicStyle::Exception);
/// ```
pub fn panic_style() -> PanicStyle {
    if PYO3_STYLE.load(Ordering::Relaxed) {
        PanicStyle::PyO3
    } else {
        PanicStyle::Exception
    }
}

/// The exception for a panic with `payload`, in the style in force, with the panic's message.
pub(crate) fn panic_exception(payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let message = if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else {
        "Rust future panicked".to_owned()
    };
    match panic_style() {
        PanicStyle::Exception => PanicError::new_err((message,)),
        PanicStyle::PyO3 => PanicException::new_err((message,)),
    }
}

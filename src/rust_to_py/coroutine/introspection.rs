//! What Python's tools read of a coroutine: `cr_frame`, `cr_code`, `cr_await`, `cr_running`,
//! `cr_suspended`, and the traceback entry of an exception leaving the Rust function. See the
//! guide's *What Python's tools see*.
//!
//! The frame comes from `glue/frames.py`: a coroutine of Python's own, suspended for ever,
//! whose code carries the Rust function's name, file and line. It never runs: it is there to
//! be read. It exists from the coroutine's first `send` until it finishes (see
//! `Driver::frame_owner` for why not before).

use pyo3::prelude::*;

use crate::gil_cell::GilGuard;
use crate::glue;
use crate::rust_to_py::coroutine::Coroutine;
use crate::rust_to_py::driver::Driver;

impl Coroutine {
    /// What a frame standing for the Rust function says of it: its name, qualified name, file
    /// and line (`<rust>`, line 1, when the source is not known).
    fn frame_fields(&self) -> (&str, &str, &'static str, u32) {
        let qualname = self.__qualname__();
        let (file, line) = self.label.source().unwrap_or(("<rust>", 1));
        (self.__name__(), qualname, file, line)
    }

    /// Gives an exception leaving a named coroutine a traceback entry for the Rust function.
    #[cold]
    pub(super) fn locate(&self, py: Python<'_>, err: PyErr) -> PyErr {
        if self.label.qualname().is_none() {
            return err;
        }
        let (name, qualname, file, line) = self.frame_fields();
        let located = glue::add_frame(py)
            .and_then(|add_frame| add_frame.call1((err.value(py), name, qualname, file, line)));
        match located {
            Ok(exception) => PyErr::from_value(exception),
            Err(_) => err,
        }
    }

    /// The driver, to read it; `None` while a `send`, `throw` or `close` of it runs.
    fn driver_at_rest(&self, py: Python<'_>) -> Option<GilGuard<'_, Driver>> {
        self.driver.cell().try_borrow_mut(py)
    }

    /// `cr_running`: a `send`, `throw` or `close` of the coroutine runs right now.
    pub(super) fn is_running(&self, py: Python<'_>) -> bool {
        self.driver_at_rest(py).is_none()
    }

    /// `cr_suspended`: started, not finished, not running.
    pub(super) fn is_suspended(&self, py: Python<'_>) -> bool {
        self.driver_at_rest(py)
            .is_some_and(|driver| driver.is_suspended())
    }

    /// `cr_state` (3.15's `inspect` reads it): exact even before the start, where older
    /// Pythons, which read `cr_frame`, see a closed coroutine.
    pub(super) fn state(&self, py: Python<'_>) -> &'static str {
        match self.driver_at_rest(py) {
            None => "CORO_RUNNING",
            Some(driver) if driver.is_finished() => "CORO_CLOSED",
            Some(driver) if driver.started() => "CORO_SUSPENDED",
            Some(_) => "CORO_CREATED",
        }
    }

    /// `cr_await`: the Python awaitable its future delegates to (a native coroutine, whose own
    /// `cr_await` continues the chain, or an `__await__` iterator), else the `WakeupFuture` or
    /// trio coroutine its task is parked on.
    pub(super) fn awaiting(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let driver = self.driver_at_rest(py)?;
        driver.awaiting().map(|awaiting| awaiting.clone_ref(py))
    }

    /// `cr_frame`: one per coroutine, made when first asked for, so that `Task.get_stack()`,
    /// `asyncio.capture_call_graph()` and trio's `Task.iter_await_frames()` name the function.
    pub(super) fn frame<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let (name, qualname, file, line) = self.frame_fields();
        let make = || {
            Ok(glue::frame_owner(py)?
                .call1((name, qualname, file, line))?
                .unbind())
        };
        let frame_of = |owner: &Py<PyAny>| owner.bind(py).getattr(pyo3::intern!(py, "cr_frame"));
        let Some(mut driver) = self.driver_at_rest(py) else {
            // Asked from inside its own `send` (Python code its future runs): a frame of the
            // same function, not kept.
            return frame_of(&make()?).map(Some);
        };
        let Some(owner) = driver.frame_owner(make)? else {
            return Ok(None);
        };
        let frame = frame_of(owner)?;
        if !frame.is_none() {
            return Ok(Some(frame));
        }
        // Someone cleared the frame (`frame.clear()` closes its owner): the coroutine still
        // runs, so it gets a new one rather than reading as finished.
        driver.forget_frame_owner();
        match driver.frame_owner(make)? {
            Some(owner) => frame_of(owner).map(Some),
            None => Ok(None),
        }
    }

    /// `cr_code`: the code object of `cr_frame`, which exists before and after the frame.
    pub(super) fn code<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (name, qualname, file, line) = self.frame_fields();
        glue::frame_code(py)?.call1((name, qualname, file, line))
    }
}

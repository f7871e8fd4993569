//! A Rust stream exported as a Python async generator object.

use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;

use crate::backend::Backend;
use crate::exit_guard::attach_unless_exiting;
use crate::glue;
use crate::install_once::InstallOnce;
use crate::rust_to_py::anext_slot::{self, AnextSlot};
use crate::rust_to_py::coroutine::Coroutine;
use crate::rust_to_py::errors::{stream_item_error, thrown_exception};
use crate::rust_to_py::label::{Label, StaticLabel};
use crate::rust_to_py::pollable::{IntoPyStream, PyOutcome, PyPoll};
use crate::rust_to_py::stream_slot::{drop_contained, GeneratorState, StreamSlot};

/// A Rust stream as a Python async generator: `async for`, `anext()`, `asend(None)`, `athrow`,
/// `aclose` and `contextlib.aclosing` work as with a native one.
///
/// Each `__anext__` returns a [`Coroutine`] that polls the stream for one item, so every
/// property of [`Coroutine`] holds per item: the loop drives it, any backend, any waking thread.
/// The stream ends (and is dropped at once) when it is exhausted, when an item is an `Err`
/// (raised in Python with its own type), when `aclose()` or `athrow()` is awaited, when an
/// `__anext__` is cancelled midway (as a cancelled native generator finishes), or when the
/// generator is garbage-collected.
///
/// ```
/// use pyo3::prelude::*;
/// use pyo3_async::AsyncGenerator;
///
/// /// `async for i in count(3)` yields 0, 1 and 2.
/// #[pyfunction]
/// fn count(until: u32) -> AsyncGenerator {
///     AsyncGenerator::new(futures::stream::iter((0..until).map(PyResult::Ok)))
/// }
/// ```
// Under the limited API, `__aiter__` moves the generator into a subclass (`slot_class`).
#[cfg_attr(
    not(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED))),
    pyclass(module = "pyo3_async", frozen, weakref)
)]
#[cfg_attr(
    all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED)),
    pyclass(module = "pyo3_async", frozen, weakref, subclass)
)]
pub struct AsyncGenerator {
    /// The stream; its steps reach it through the generator object, which they keep alive.
    slot: StreamSlot,
    backend: Option<Backend>,
    /// `__qualname__` and `__name__`, which the attribute macros set to the function's.
    label: Option<Label>,
    /// The generator's span, made at its first step (feature `tracing`).
    #[cfg(feature = "tracing")]
    span: std::sync::OnceLock<tracing::Span>,
}

impl AsyncGenerator {
    /// Wraps a stream whose items convert to Python objects.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::AsyncGenerator;
    ///
    /// let generator = AsyncGenerator::new(futures::stream::iter(["a", "b"].map(PyResult::Ok)));
    /// # drop(generator);
    /// ```
    pub fn new<S, T>(stream: S) -> Self
    where
        S: Stream<Item = PyResult<T>> + Send + 'static,
        T: for<'py> IntoPyObject<'py> + 'static,
    {
        AsyncGenerator {
            slot: StreamSlot::new(Box::pin(IntoPyStream(stream))),
            backend: None,
            label: None,
            #[cfg(feature = "tracing")]
            span: std::sync::OnceLock::new(),
        }
    }

    /// Sets `__qualname__` (and `__name__`, its part after the last dot), shown in the
    /// generator's repr. The attribute macros set it to the Rust function's name.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::AsyncGenerator;
    ///
    /// let generator = AsyncGenerator::new(futures::stream::empty::<PyResult<()>>())
    ///     .with_qualname("Feed.items");
    /// # drop(generator);
    /// ```
    pub fn with_qualname(mut self, qualname: impl Into<Cow<'static, str>>) -> Self {
        self.label = Some(Label::with(self.label.take(), Some(qualname.into()), None));
        self
    }

    /// The attribute macros' `with_qualname`, from a static of the function.
    #[doc(hidden)]
    pub fn __with_label(mut self, label: &'static StaticLabel) -> Self {
        self.label = Some(Label::from_static(label));
        self
    }

    /// Fixes the event-loop backend of every `__anext__` instead of detecting it.
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::{AsyncGenerator, Backend};
    ///
    /// let generator = AsyncGenerator::new(futures::stream::empty::<PyResult<()>>())
    ///     .with_backend(Backend::Trio);
    /// # drop(generator);
    /// ```
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// `__anext__`'s awaitable: a step polling the stream for one item.
    fn step(slf: &Bound<'_, Self>) -> Coroutine {
        slf.get().awaitable(NextItem {
            generator: slf.clone().unbind(),
            claimed: false,
        })
    }

    /// What a frame standing for the Rust function says of it (`<rust>`, line 1, when its
    /// source is not known).
    fn frame_fields(&self) -> (&str, &str, &'static str, u32) {
        let qualname = self.__qualname__();
        let (file, line) = self
            .label
            .as_ref()
            .and_then(Label::source)
            .unwrap_or(("<rust>", 1));
        (Label::name_of(qualname), qualname, file, line)
    }

    fn awaitable(&self, step: impl PyPoll + 'static) -> Coroutine {
        let coroutine = Coroutine::quiet_step(step, self.backend);
        #[cfg(feature = "tracing")]
        let coroutine = coroutine.in_span({
            let span = self
                .span
                .get_or_init(|| crate::rust_to_py::poll_span::async_generator(self.__qualname__()));
            // The task pulling this item (an enabled span only): items may be pulled by
            // different tasks.
            Python::attach(|py| crate::rust_to_py::poll_span::record_task(py, span));
            span
        });
        coroutine
    }
}

#[pymethods]
impl AsyncGenerator {
    /// Itself; under the limited API, moved into the class that has `am_anext` first.
    fn __aiter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        Self::enter_iterated_class(&slf)?;
        Ok(slf)
    }

    #[getter]
    fn __qualname__(&self) -> &str {
        Label::qualname_or(self.label.as_ref(), "AsyncGenerator")
    }

    #[getter]
    fn __name__(&self) -> &str {
        Label::name_of(self.__qualname__())
    }

    fn __repr__(&self) -> String {
        format!("<pyo3_async async_generator {}>", self.__qualname__())
    }

    /// Whether its stream is being polled right now (Python code that the stream runs asks).
    #[getter]
    fn ag_running(&self, py: Python<'_>) -> bool {
        self.slot.state(py) == GeneratorState::Running
    }

    /// Whether it has produced or been asked for an item, has not ended, and is not running
    /// (3.12+'s `inspect.getasyncgenstate` reads it).
    #[getter]
    fn ag_suspended(&self, py: Python<'_>) -> bool {
        self.slot.state(py) == GeneratorState::Suspended
    }

    /// `AGEN_CREATED`, `AGEN_RUNNING`, `AGEN_SUSPENDED` or `AGEN_CLOSED` (3.15's `inspect`
    /// reads it).
    #[getter]
    fn ag_state(&self, py: Python<'_>) -> &'static str {
        self.slot.state(py).name()
    }

    /// A frame standing for the Rust function, as `Coroutine.cr_frame` is; `None` once the
    /// stream has ended.
    #[getter]
    fn ag_frame<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let fields = self.frame_fields();
        let make = || PyResult::Ok(glue::frame_owner(py)?.call1(fields)?.unbind());
        let frame_of = |owner: Py<PyAny>| owner.into_bound(py).getattr(intern!(py, "cr_frame"));
        let Some(owner) = self.slot.frame_owner(py, make)? else {
            return Ok(None);
        };
        let frame = frame_of(owner)?;
        if !frame.is_none() {
            return Ok(Some(frame));
        }
        // Someone cleared the frame (`frame.clear()` closes its owner): a new one.
        self.slot.forget_frame_owner(py);
        match self.slot.frame_owner(py, make)? {
            Some(owner) => frame_of(owner).map(Some),
            None => Ok(None),
        }
    }

    /// The code object of `ag_frame`: named after the Rust function, in its file.
    #[getter]
    fn ag_code<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        glue::frame_code(py)?.call1(self.frame_fields())
    }

    /// What the generator awaits: what its stream awaits is Rust's, invisible here, so
    /// always `None`.
    #[getter]
    fn ag_await(&self) -> Option<Py<PyAny>> {
        None
    }

    fn __anext__(slf: &Bound<'_, Self>) -> Coroutine {
        static SLOT: InstallOnce = InstallOnce::new();
        SLOT.run(|| anext_slot::install_slot::<AsyncGenerator>(slf.py()));
        Self::step(slf)
    }

    /// `asend(None)` is `__anext__()`: a Rust stream has no use for other values.
    fn asend(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<Coroutine> {
        if !value.is_none() {
            return Err(PyTypeError::new_err(
                "a Rust stream cannot receive values: asend() accepts only None",
            ));
        }
        Ok(Self::step(slf))
    }

    /// Ends the stream and raises the exception: a Rust stream has nowhere to catch it.
    #[pyo3(signature = (typ, val = None, tb = None))]
    fn athrow(
        slf: &Bound<'_, Self>,
        typ: &Bound<'_, PyAny>,
        val: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Coroutine> {
        let exception = thrown_exception(typ, val, tb)?;
        Ok(slf.get().awaitable(Close {
            generator: slf.clone().unbind(),
            method: "athrow",
            exception: Some(exception),
        }))
    }

    /// Ends the stream, dropping it when the returned awaitable runs.
    fn aclose(slf: &Bound<'_, Self>) -> Coroutine {
        slf.get().awaitable(Close {
            generator: slf.clone().unbind(),
            method: "aclose",
            exception: None,
        })
    }
}

impl AnextSlot for AsyncGenerator {
    /// The step, made in the class its `await` takes (under the limited API): `await` then
    /// finds the fast slots at once.
    fn next_step(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Ok(Self::step(slf).into_pyobject(slf.py())?.into_any().unbind())
    }
}

impl AsyncGenerator {
    /// Under the limited API, moves the generator into the class that has `am_anext`.
    #[cfg(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED)))]
    fn enter_iterated_class(slf: &Bound<'_, Self>) -> PyResult<()> {
        use crate::rust_to_py::slot_class;
        use pyo3::types::PyType;

        use crate::lazy::Lazy;

        static ITERATED_CLASS: Lazy<Py<PyType>> = Lazy::new();
        let py = slf.py();
        let class = ITERATED_CLASS.get_or_try_init(py, || {
            let slots = anext_slot::iterated_slots::<AsyncGenerator>();
            let base = py.get_type::<AsyncGenerator>();
            slot_class::subclass(&base, c"pyo3_async.AsyncGenerator", &slots, 0)
        })?;
        // SAFETY: the class was made from `AsyncGenerator`'s, and `slf` is one.
        unsafe { slot_class::move_into(slf.as_any(), class) };
        Ok(())
    }

    /// With the full API, the class itself has the slot.
    #[cfg(not(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED))))]
    fn enter_iterated_class(_slf: &Bound<'_, Self>) -> PyResult<()> {
        Ok(())
    }
}

/// One `__anext__`: polls the stream for the next item.
struct NextItem {
    generator: Py<AsyncGenerator>,
    /// This awaitable holds the generator's `running` flag.
    claimed: bool,
}

impl PyPoll for NextItem {
    fn poll_py(self: Pin<&mut Self>, py: Python<'_>, cx: &mut Context<'_>) -> Poll<PyOutcome> {
        let this = self.get_mut();
        let slot = &this.generator.get().slot;
        let Some(mut state) = slot.borrow(py) else {
            return Poll::Ready(Err(already_running("anext")));
        };
        if !this.claimed {
            if state.running {
                return Poll::Ready(Err(already_running("anext")));
            }
            state.running = true;
            this.claimed = true;
        }
        let (polled, ended) = state.poll_next(py, cx);
        if polled.is_ready() {
            state.running = false;
            this.claimed = false;
        }
        drop(state);
        drop_contained(ended);
        polled
    }
}

impl Drop for NextItem {
    /// Dropped while the item was still pending: the `__anext__` was cancelled (or panicked),
    /// which ends the generator, as it ends a native one. Steps end on attached threads (a
    /// coroutine finishes or is collected there); at exit, a stream left is dropped with its
    /// generator instead.
    fn drop(&mut self) {
        if self.claimed {
            let slot = &self.generator.get().slot;
            attach_unless_exiting(|py| {
                let ended = slot.borrow(py).and_then(|mut state| {
                    state.running = false;
                    state.stream.take()
                });
                drop_contained(ended);
            });
        }
    }
}

/// `aclose()` or `athrow()`: ends the stream when awaited.
struct Close {
    generator: Py<AsyncGenerator>,
    method: &'static str,
    exception: Option<PyErr>,
}

impl PyPoll for Close {
    fn poll_py(self: Pin<&mut Self>, py: Python<'_>, _cx: &mut Context<'_>) -> Poll<PyOutcome> {
        let this = self.get_mut();
        let slot = &this.generator.get().slot;
        let running = slot.borrow(py).is_none_or(|state| state.running);
        if running {
            return Poll::Ready(Err(already_running(this.method)));
        }
        // Thrown where the generator is suspended, the exception leaves its body (PEP 479).
        let suspended = slot.state(py) == GeneratorState::Suspended;
        slot.close(py);
        Poll::Ready(match this.exception.take() {
            Some(exception) if suspended => Err(Box::new(stream_item_error(py, exception))),
            Some(exception) => Err(Box::new(exception)),
            None => Ok(py.None()),
        })
    }
}

fn already_running(method: &str) -> Box<PyErr> {
    Box::new(PyRuntimeError::new_err(format!(
        "{method}(): asynchronous generator is already running"
    )))
}

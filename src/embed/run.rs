//! A Rust future as the main task of a new Python event loop.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::embed::loop_kind::LoopKind;
use crate::embed::loop_options::LoopOptions;
use crate::glue;
use crate::rust_to_py::Coroutine;

/// Runs `future` to completion as the main task of a new `kind` loop on this thread
/// (`asyncio.run`, `uvloop.run` or `trio.run`), and returns its output: the equivalent of
/// `asyncio.run(main())` for a Rust `main`.
///
/// The future runs as a [`Coroutine`] of the loop, so it can await Python work directly
/// ([`PyFuture`](crate::PyFuture), [`EventLoop::current`](crate::EventLoop::current)). When it
/// is done, the loop ends as `asyncio.run` ends it: tasks still running are cancelled, async
/// generators closed, the loop closed. An error of the future, or of the loop, is returned;
/// a panic of the future resumes here.
///
/// Call it on a thread that runs no loop (the main thread of a Rust program, typically;
/// asyncio and trio handle Ctrl-C there). `#[pyo3_async::main]` writes that `main` for you.
///
/// ```
/// use pyo3::prelude::*;
/// use pyo3_async::{EventLoop, LoopKind};
///
/// Python::initialize();
/// let answer = Python::attach(|py| {
///     pyo3_async::run(py, LoopKind::Trio, async {
///         // Python work, as a task of the loop this future runs on.
///         let nap = Python::attach(|py| {
///             let sleep = py.import("trio")?.getattr("sleep")?;
///             EventLoop::current(py)?.spawn(&sleep.call1((0.01,))?)
///         })?;
///         nap.await?;
///         PyResult::Ok(42)
///     })
/// })?;
/// assert_eq!(answer, 42);
/// # PyResult::Ok(())
/// ```
pub fn run<F, T>(py: Python<'_>, kind: LoopKind, future: F) -> PyResult<T>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: Send + 'static,
{
    run_with(py, kind, &LoopOptions::new(), future)
}

/// [`run`], with the loop made as `options` say (asyncio's debug mode, a loop factory).
///
/// ```
/// use pyo3::prelude::*;
/// use pyo3_async::{LoopKind, LoopOptions};
///
/// Python::initialize();
/// Python::attach(|py| {
///     // uvloop's loop, made by its factory, under plain asyncio.
///     let factory = py.import("uvloop")?.getattr("new_event_loop")?.unbind();
///     let options = LoopOptions::new().loop_factory(factory);
///     let name = pyo3_async::run_with(py, LoopKind::Asyncio, &options, async {
///         Python::attach(|py| {
///             let running = py.import("asyncio")?.call_method0("get_running_loop")?;
///             running.get_type().name()?.extract::<String>()
///         })
///     })?;
///     assert_eq!(name, "Loop");
///     PyResult::Ok(())
/// })?;
/// # PyResult::Ok(())
/// ```
pub fn run_with<F, T>(
    py: Python<'_>,
    kind: LoopKind,
    options: &LoopOptions,
    future: F,
) -> PyResult<T>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: Send + 'static,
{
    let (main, output) = main_task(kind, future);
    let (debug, loop_factory) = options.arguments(py);
    glue::run_loop(py)?.call1((kind.name(), main, debug, loop_factory))?;
    take(&output)
}

/// Runs `future` to completion on `event_loop`, an asyncio loop that exists but does not run
/// (`loop.run_until_complete`), and returns its output. The loop stays open: it is yours.
///
/// For programs that keep one loop across several runs, or made it themselves. A loop that
/// runs already, or is closed, is asyncio's `RuntimeError`.
///
/// ```
/// use pyo3::prelude::*;
///
/// Python::initialize();
/// Python::attach(|py| {
///     let event_loop = py.import("asyncio")?.call_method0("new_event_loop")?;
///     // Two runs on the same loop: what the first leaves on it is there for the second.
///     let first = pyo3_async::run_until_complete(&event_loop, async { PyResult::Ok(1) })?;
///     let second = pyo3_async::run_until_complete(&event_loop, async { PyResult::Ok(2) })?;
///     assert_eq!(first + second, 3);
///     event_loop.call_method0("close")?;
///     PyResult::Ok(())
/// })?;
/// # PyResult::Ok(())
/// ```
pub fn run_until_complete<F, T>(event_loop: &Bound<'_, PyAny>, future: F) -> PyResult<T>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: Send + 'static,
{
    let py = event_loop.py();
    let (main, output) = main_task(LoopKind::Asyncio, future);
    glue::run_until_complete(py)?.call1((event_loop, main))?;
    take(&output)
}

/// What `#[pyo3_async::test]` runs, once per loop: the test's future as the main task of a
/// new `kind` loop, in a Python thread of its own (tests run in parallel, each on its loop);
/// an error fails the test with its Python traceback.
#[doc(hidden)]
pub fn run_test<F>(kind: LoopKind, future: F)
where
    F: Future<Output = PyResult<()>> + Send + 'static,
{
    crate::embed::initialize::initialize_python();
    let ran = Python::attach(|py| {
        let (main, output) = main_task(kind, future);
        glue::run_loop_in_thread(py)?.call1((kind.name(), main))?;
        take(&output)
    });
    if let Err(err) = ran {
        let shown = Python::attach(|py| {
            py.import("traceback")
                .and_then(|traceback| traceback.call_method1("format_exception", (err.value(py),)))
                .and_then(|lines| lines.extract::<Vec<String>>())
                .map_or_else(|_| err.to_string(), |lines| lines.concat())
        });
        panic!("the test failed on {kind}:\n{shown}");
    }
}

type Output<T> = Arc<Mutex<Option<T>>>;

/// The coroutine running `future`, and where it leaves the future's output (which need not
/// be a Python object).
fn main_task<F, T>(kind: LoopKind, future: F) -> (Coroutine, Output<T>)
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: Send + 'static,
{
    // `tokio-default`: the entry point's future too is polled in the runtime's context.
    #[cfg(feature = "tokio-default")]
    let future = crate::tokio::in_runtime(future);
    let output = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&output);
    let main = Coroutine::new(async move {
        let value = future.await?;
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
        PyResult::Ok(())
    })
    .without_unawaited_warning()
    .with_backend(kind.backend());
    (main, output)
}

fn take<T>(output: &Output<T>) -> PyResult<T> {
    output
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .ok_or_else(|| PyRuntimeError::new_err("the event loop ended before the future finished"))
}

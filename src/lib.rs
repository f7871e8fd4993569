//! Rust futures and Python coroutines awaiting each other, with no glue runtime in between.
//!
//! Python's event loops and Rust's executors both wake work through callbacks: asyncio
//! futures have done-callbacks, trio has `reschedule`, Rust has [`Waker`](std::task::Waker).
//! This crate joins them directly, on asyncio, uvloop, trio and anyio.
//!
//! **Rust → Python**: [`Coroutine`] turns a Rust future into a Python coroutine object and
//! [`AsyncGenerator`] turns a Rust stream into a Python async generator. The Python event loop
//! drives them; no Rust runtime is required unless the future itself needs one.
//!
//! ```
//! use pyo3::prelude::*;
//! use pyo3_async::{AsyncGenerator, Coroutine};
//!
//! #[pyfunction]
//! fn answer() -> Coroutine {
//!     Coroutine::new(async { PyResult::Ok(42) })
//! }
//!
//! #[pyfunction]
//! fn count(until: u32) -> AsyncGenerator {
//!     AsyncGenerator::new(futures::stream::iter((0..until).map(PyResult::Ok)))
//! }
//!
//! #[pymodule]
//! fn example(m: &Bound<'_, PyModule>) -> PyResult<()> {
//!     m.add_function(wrap_pyfunction!(answer, m)?)?;
//!     m.add_function(wrap_pyfunction!(count, m)?)?;
//!     Ok(())
//! }
//! ```
//!
//! **Python → Rust**: [`PyFuture`] and [`PyAsyncIter`] are `Send` Rust futures and streams over
//! Python work, awaitable by tokio or smol on any thread; [`EventLoop`] schedules work on a loop.
//!
//! **Loops started from Rust**: [`run`] makes a Rust future the main task of a new asyncio,
//! uvloop or trio loop (and [`macro@main`] writes that `main`), [`LoopThread`] runs a loop on a
//! thread of its own, and [`macro@test`] runs an `async fn` test once per loop.
//!
//! **Synchronous callers**: [`block_on`] waits for a Rust future from a sync `#[pyfunction]`,
//! with the interpreter released and Ctrl-C working.
//!
//! **[The guide](guide)** walks through both directions and the set-up: an extension module
//! with maturin, tokio and smol, embedding, testing, cancellation, contextvars, trio and anyio,
//! and migrating from pyo3-async 0.3.2, pyo3-async-runtimes or PyO3's `experimental-async`.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `macros` | yes | [`pyfunction`], [`pymethods`], [`macro@main`], [`macro@test`] |
//! | `tokio` | no | the `tokio` module: futures polled in a tokio runtime's context, runtimes per call, a spawn that aborts on drop, the runtime's shutdown at exit |
//! | `tokio-default` | no | every exported function, generator and entry point polled in the runtime's context; an application's choice, never a library's (Cargo unifies features across a build) |
//! | `tracing` | no | a `tracing` span per exported coroutine and generator, entered around every poll ([guide](guide::observability)) |

// The layers, bottom-up — sync, census, exit_guard, fork, thread_state, glue, home, task,
// backend, waker, delegation, rust_to_py, py_to_rust, stats, tokio, embed, guide — each importing only those
// below it (`tools/layers.py` checks it in `make test`; ARCHITECTURE.md describes them).
mod backend;
mod census;
mod delegation;
mod embed;
mod exit_guard;
mod fork;
mod gil_cell;
mod glue;
mod home;
mod install_once;
mod lazy;
mod py_to_rust;
mod refcount;
mod rust_to_py;
mod stats;
mod sync;
mod task;
mod thread_state;
#[cfg(feature = "tokio")]
pub mod tokio;
mod visit;
// The guide: documentation only, one page per module.
#[cfg(any(doc, doctest))]
pub mod guide;
mod waker;

/// Exports an `async fn` as a Python coroutine function, on any event loop.
///
/// On a plain `fn`, it is [`#[pyo3::pyfunction]`](pyo3::pyfunction), so one attribute serves
/// a whole module. On an `async fn`, it generates a `#[pyo3::pyfunction]` of the same name that extracts
/// the arguments (a wrong one raises `TypeError` at call time, as for `async def`) and returns
/// a [`Coroutine`] over the function's body, named after the function (`__qualname__`).
///
/// The body may return a plain value (`()` becomes `None`), or a `PyResult<T>` / `Result<T, E>`
/// with `E: Into<PyErr>`. Arguments must be owned (the coroutine outlives the call), and the
/// body's future must be `Send`.
///
/// Options, besides every `#[pyo3::pyfunction]` option (`name`, `signature`,
/// `text_signature`, `pass_module` — the module then arrives as `Py<PyModule>`, `crate`,
/// `warn`):
/// - `asyncio` or `trio`: fix the backend instead of detecting it;
/// - `allow_threads`: poll with the interpreter released ([`AllowThreads`]);
/// - `tokio` (feature `tokio`): poll inside the process-wide tokio runtime's context, so tokio
///   timers and I/O work ([`tokio::in_runtime`]); the `tokio-default`
///   feature makes this every function's default;
/// - `local`: the body's future need not be `Send` (an `Rc`, a `RefCell` borrow across an
///   `.await`); it runs only on the thread that calls the function ([`Coroutine::local`]);
/// - `generator`: the body returns a `Stream<Item = PyResult<T>>`, exported as an async
///   generator ([`AsyncGenerator`]).
///
/// ```
/// use std::time::Duration;
/// use futures::Stream;
/// use pyo3::prelude::*;
///
/// /// `await sleep(0.5)` on asyncio, uvloop, trio or anyio.
/// #[pyo3_async::pyfunction]
/// async fn sleep(seconds: f64) {
///     smol::Timer::after(Duration::from_secs_f64(seconds)).await;
/// }
///
/// /// Fixed to trio, polled with the interpreter released, renamed.
/// #[pyo3_async::pyfunction(trio, allow_threads, name = "add_later")]
/// async fn add(a: i64, b: i64) -> PyResult<i64> {
///     a.checked_add(b).ok_or_else(|| pyo3::exceptions::PyOverflowError::new_err("too big"))
/// }
///
/// /// `async for i in count(3)`.
/// #[pyo3_async::pyfunction(generator)]
/// async fn count(until: u32) -> impl Stream<Item = PyResult<u32>> + Send {
///     futures::stream::iter((0..until).map(Ok))
/// }
///
/// #[pymodule]
/// fn example(m: &Bound<'_, PyModule>) -> PyResult<()> {
///     m.add_function(wrap_pyfunction!(sleep, m)?)?;
///     m.add_function(wrap_pyfunction!(add, m)?)?;
///     m.add_function(wrap_pyfunction!(count, m)?)?;
///     Ok(())
/// }
/// ```
#[cfg(feature = "macros")]
pub use pyo3_async_macros::pyfunction;

/// `#[pyo3::pymethods]` that also exports `async fn` methods as coroutine methods.
///
/// Plain methods pass through unchanged. An async method gets the options of
/// [`pyfunction`](macro@pyfunction) through `#[pyo3_async(...)]` (and PyO3's through
/// `#[pyo3(...)]`), and a `__qualname__` of `Class.method`.
///
/// **Receivers.** `&self` works on `#[pyclass(frozen)]` classes: the method clones the object
/// as a `Py<Self>` into the coroutine and borrows it for the coroutine's whole life. A frozen
/// class is immutable (interior mutability aside) and `Sync`, which is what makes that borrow
/// sound while Python goes on using the object; a non-frozen class could be mutably borrowed
/// by Python in the middle of a suspension. For the same reason `&mut self` is refused: use
/// interior mutability (`Mutex`, atomics). Associated functions (`#[staticmethod]`) work too.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use pyo3::prelude::*;
///
/// #[pyclass(frozen)]
/// struct Counter {
///     hits: AtomicU64,
/// }
///
/// #[pyo3_async::pymethods]
/// impl Counter {
///     #[new]
///     fn new() -> Self {
///         Counter { hits: AtomicU64::new(0) }
///     }
///
///     /// `await counter.hit()`
///     async fn hit(&self) -> u64 {
///         self.hits.fetch_add(1, Ordering::Relaxed) + 1
///     }
///
///     /// `await Counter.zero()`, on trio only.
///     #[staticmethod]
///     #[pyo3_async(trio)]
///     async fn zero() -> u64 {
///         0
///     }
/// }
/// ```
#[cfg(feature = "macros")]
pub use pyo3_async_macros::pymethods;

/// Makes `async fn main` the main task of a Python event loop: `asyncio` (the default),
/// `uvloop` or `trio`.
///
/// The generated `main` initialises the interpreter and calls [`run`]. The body may return `()`
/// or a `Result` whose error converts into a `PyErr`; an error is printed with its Python
/// traceback and ends the process with status 1, as Python ends a program that raised.
///
/// `#[pyo3_async::main(trio, tokio)]` polls the body inside the tokio runtime's context
/// (feature `tokio`), so that `tokio::time` and `tokio::net` work in it; the `tokio-default`
/// feature does that for every `main`, test and [`run`]. `debug` turns asyncio's debug mode
/// on ([`LoopOptions::debug`]).
///
/// ```
/// use pyo3::prelude::*;
/// use pyo3_async::EventLoop;
///
/// #[pyo3_async::main(trio)]
/// async fn main() -> PyResult<()> {
///     let nap = Python::attach(|py| {
///         let sleep = py.import("trio")?.getattr("sleep")?;
///         EventLoop::current(py)?.spawn(&sleep.call1((0.01,))?)
///     })?;
///     nap.await?;
///     Ok(())
/// }
/// ```
#[cfg(feature = "macros")]
pub use pyo3_async_macros::main;

/// Runs an `async fn` test once per Python event loop: `#[pyo3_async::test]` makes a module
/// named after the function with one `#[test]` per loop (`asyncio`, `uvloop`, `trio`), and
/// `#[pyo3_async::test(asyncio, trio)]` picks some.
///
/// Each test runs the body as the main task of a new loop of its kind, in a Python thread of
/// its own (tests run in parallel), as [`run`] would; an error fails the test with its Python
/// traceback. Other attributes (`#[ignore]`, `#[should_panic]`) go on every generated test.
/// The body stays where it was written: `super::` and the module's names mean what they mean
/// there. `tokio` among the arguments (`#[pyo3_async::test(asyncio, tokio)]`) polls the body
/// inside the tokio runtime's context, as for [`main`].
///
/// ```
/// use pyo3::prelude::*;
/// use pyo3_async::{Coroutine, EventLoop};
///
/// #[pyo3_async::test]
/// async fn awaits_python() -> PyResult<()> {
///     let echoed = Python::attach(|py| {
///         // A Rust coroutine awaited by a Python task of the loop the test runs on.
///         let echo = Coroutine::new(async { PyResult::Ok("echo") });
///         EventLoop::current(py)?.spawn(Bound::new(py, echo)?.as_any())
///     })?
///     .await?;
///     Python::attach(|py| assert_eq!(echoed.extract::<String>(py).unwrap(), "echo"));
///     Ok(())
/// }
/// // `cargo test` runs awaits_python::asyncio, awaits_python::uvloop and awaits_python::trio.
/// # fn main() {
/// #     for kind in pyo3_async::LoopKind::ALL {
/// #         pyo3_async::__private::run_test(kind, awaits_python::body());
/// #     }
/// # }
/// ```
#[cfg(feature = "macros")]
pub use pyo3_async_macros::test;

/// What the attribute macros' expansions call; not a public API.
#[doc(hidden)]
pub mod __private {
    /// `tokio-default`: every exported async function and generator runs in the tokio
    /// runtime's context; without the feature, nothing changes.
    #[cfg(feature = "tokio-default")]
    pub fn by_default<F>(inner: F) -> crate::tokio::InRuntime<F> {
        crate::tokio::in_runtime(inner)
    }

    #[cfg(not(feature = "tokio-default"))]
    pub fn by_default<F>(inner: F) -> F {
        inner
    }

    pub use crate::embed::{initialize_python, run_test};
    pub use crate::rust_to_py::macro_output::{
        flatten_stream, kinds, IsResult, IsValue, ResultOutput, ValueOutput,
    };
    pub use crate::rust_to_py::{StaticLabel, ThreadBound};
    /// PyO3 as this crate uses it: the macros' own code names it here, so that it compiles
    /// whatever name the user's crate gives PyO3 (`crate = "..."`).
    pub use pyo3;
}

pub use backend::Backend;
pub use embed::{block_on, run, run_until_complete, run_with, LoopKind, LoopOptions, LoopThread};
pub use exit_guard::attach_unless_exiting;
pub use py_to_rust::{is_cancellation, EventLoop, PyAsyncIter, PyContext, PyFuture};
pub use rust_to_py::{
    add_types, mark_coroutine_functions, panic_style, set_panic_style, AllowThreads,
    AsyncGenerator, CancelHandle, Coroutine, PanicError, PanicStyle,
};
pub use stats::{py_stats, stats, Stats};
pub use thread_state::{keep_thread_state, release_thread_state};

/// The README's examples, compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

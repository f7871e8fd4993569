//! The process-wide runtime: chosen once per process, shut down at exit, chosen again by a
//! forked child.
//!
//! | state | how it got there | at exit | in a forked child |
//! |---|---|---|---|
//! | none | | nothing | none |
//! | owned | [`init`]'s builder, or the default built on first use | shut down: tasks dropped while every thread may still attach, the whole shutdown given [`set_shutdown_timeout`] | none: the parent's is leaked (its threads were not forked), a new one is chosen on first use |
//! | given | [`init_with_handle`] | yours to shut down | none, as above |
//!
//! Invariants: a process chooses at most once ([`InitError::AlreadyInitialized`] after), and
//! nothing of the parent's runtime is touched in a child (see `crate::fork`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ::tokio::runtime::{Builder, Handle, Runtime};
use pyo3::exceptions::PyRuntimeError;
use pyo3::PyErr;

use crate::fork::PerProcess;

/// The process's runtime: one the crate built (and shuts down at exit), or a handle of yours.
enum Chosen {
    Owned {
        handle: Handle,
        /// Taken at exit, to be shut down.
        runtime: Mutex<Option<Runtime>>,
    },
    Given(Handle),
}

impl Chosen {
    fn handle(&self) -> &Handle {
        match self {
            Chosen::Owned { handle, .. } | Chosen::Given(handle) => handle,
        }
    }
}

static RUNTIME: PerProcess<Chosen> = PerProcess::new();

/// How long exit waits for the owned runtime's blocking threads, in milliseconds.
static SHUTDOWN_TIMEOUT_MS: AtomicU64 = AtomicU64::new(1_000);

/// Why the runtime could not be chosen.
#[derive(Debug)]
#[non_exhaustive]
pub enum InitError {
    /// The runtime was chosen already (by an earlier `init`, or by first use).
    AlreadyInitialized,
    /// The builder failed (out of file descriptors or threads, say).
    Build(std::io::Error),
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitError::AlreadyInitialized => {
                f.write_str("the pyo3-async tokio runtime is already initialised")
            }
            InitError::Build(err) => write!(f, "cannot build the tokio runtime: {err}"),
        }
    }
}

impl std::error::Error for InitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InitError::Build(err) => Some(err),
            InitError::AlreadyInitialized => None,
        }
    }
}

/// A `RuntimeError`, so that `init(builder)?` works in a `#[pymodule]`.
impl From<InitError> for PyErr {
    fn from(err: InitError) -> PyErr {
        PyRuntimeError::new_err(err.to_string())
    }
}

/// Builds the process-wide runtime from `builder`, before its first use.
///
/// The builder is used as it is: tokio keeps one hook of each kind, so none is added. The
/// thread-state hooks below make attaching on its threads cheap, for tasks that store nothing
/// in their Python thread state (see [`keep_thread_state`](crate::keep_thread_state) for what a
/// kept state keeps from one task to the next). The runtime is the crate's from then on: it is
/// shut down at exit (see [`set_shutdown_timeout`]).
///
/// ```
/// use pyo3_async::tokio::InitError;
///
/// let mut builder = tokio::runtime::Builder::new_multi_thread();
/// builder
///     .worker_threads(2)
///     .enable_all()
///     .on_thread_start(pyo3_async::keep_thread_state)
///     .on_thread_unpark(pyo3_async::keep_thread_state)
///     .on_thread_stop(pyo3_async::release_thread_state);
/// pyo3_async::tokio::init(builder).unwrap();
/// let again = pyo3_async::tokio::init(tokio::runtime::Builder::new_multi_thread());
/// assert!(matches!(again, Err(InitError::AlreadyInitialized)));
/// ```
pub fn init(mut builder: Builder) -> Result<(), InitError> {
    if RUNTIME.get().is_some() {
        return Err(InitError::AlreadyInitialized);
    }
    adopt(builder.build().map_err(InitError::Build)?).map(drop)
}

/// Uses a runtime of your own (its [`Handle`]) as the process-wide one, before first use. It
/// stays yours: keep it running for as long as Python may await futures polled in it, and shut
/// it down yourself.
///
/// ```
/// let runtime = tokio::runtime::Runtime::new().unwrap();
/// pyo3_async::tokio::init_with_handle(runtime.handle().clone()).unwrap();
/// # std::mem::forget(runtime); // it must outlive every future polled in it
/// ```
pub fn init_with_handle(handle: Handle) -> Result<(), InitError> {
    RUNTIME
        .set(Chosen::Given(handle))
        .map(drop)
        .map_err(|_| InitError::AlreadyInitialized)
}

/// The process-wide runtime's handle; builds the default runtime (multi-threaded, every
/// driver enabled) on first use.
///
/// # Panics
/// If the default runtime cannot be built (the system refuses its threads or its driver);
/// [`init`] reports that as an error instead.
///
/// ```
/// let answer = pyo3_async::tokio::handle().block_on(async { 42 });
/// assert_eq!(answer, 42);
/// ```
pub fn handle() -> &'static Handle {
    if let Some(chosen) = RUNTIME.get() {
        return chosen.handle();
    }
    let runtime = Builder::new_multi_thread()
        .enable_all()
        .thread_name("pyo3-async-tokio")
        .build()
        .unwrap_or_else(|err| panic!("{}", InitError::Build(err)));
    match adopt(runtime) {
        Ok(chosen) => chosen.handle(),
        // Another thread chose first: that runtime is the process's.
        Err(_) => match RUNTIME.get() {
            Some(chosen) => chosen.handle(),
            None => unreachable!("a runtime was chosen"),
        },
    }
}

/// Whether this process chose its runtime yet (without choosing one).
pub(crate) fn chosen() -> bool {
    RUNTIME.get().is_some()
}

/// Makes `runtime` the process's, to be shut down at exit; a runtime that loses the race to
/// another is shut down in the background (dropping it could block, or panic in async code).
fn adopt(runtime: Runtime) -> Result<&'static Chosen, InitError> {
    let owned = Chosen::Owned {
        handle: runtime.handle().clone(),
        runtime: Mutex::new(Some(runtime)),
    };
    match RUNTIME.set(owned) {
        Ok(chosen) => {
            crate::exit_guard::before_closing(shut_down_at_exit);
            // The exit hook that runs the shutdown, even in a program that never meets an
            // event loop (one that only `block_on`s, say); without an interpreter, none.
            crate::exit_guard::attach_unless_exiting(crate::exit_guard::install);
            Ok(chosen)
        }
        Err(Chosen::Owned { runtime, .. }) => {
            if let Some(runtime) = runtime.into_inner().unwrap_or_else(PoisonError::into_inner) {
                runtime.shutdown_background();
            }
            Err(InitError::AlreadyInitialized)
        }
        Err(Chosen::Given(_)) => Err(InitError::AlreadyInitialized),
    }
}

/// How long the interpreter's exit waits for the owned runtime to shut down (1 s unless set):
/// for its workers to finish the poll they are in and drop their tasks, and for its blocking
/// tasks to end. What still runs then is left running, detached, as tokio's
/// `shutdown_timeout` does.
///
/// At exit (Python's `atexit`, before the interpreter finalises) the runtime the crate owns is
/// shut down: its tasks are dropped while every thread may still attach to the interpreter, so
/// their cleanup runs, then its threads end. A thread still running after the timeout (a poll
/// longer than it, a blocking task) must not attach with `Python::attach` any more: the
/// finalising interpreter kills a thread that does, which aborts the process. Code on the
/// runtime's threads that may run at exit attaches with
/// [`attach_unless_exiting`](crate::attach_unless_exiting) instead: exit waits for a thread
/// inside it (5 s at most), and refuses one that comes after. With a timeout of 0, exit does
/// not wait at all: every task's drop races the interpreter's end.
///
/// ```
/// use std::time::Duration;
///
/// pyo3_async::tokio::set_shutdown_timeout(Duration::from_millis(200));
/// ```
pub fn set_shutdown_timeout(timeout: Duration) {
    let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    SHUTDOWN_TIMEOUT_MS.store(millis, Ordering::Relaxed);
}

/// At exit (with the interpreter released): shuts the owned runtime down, once.
fn shut_down_at_exit() {
    let Some(Chosen::Owned { runtime, .. }) = RUNTIME.get() else {
        return;
    };
    let taken = runtime
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(runtime) = taken {
        if Handle::try_current().is_ok() {
            // Inside a runtime (an exit from within `block_on`) tokio forbids waiting.
            runtime.shutdown_background();
        } else {
            let millis = SHUTDOWN_TIMEOUT_MS.load(Ordering::Relaxed);
            runtime.shutdown_timeout(Duration::from_millis(millis));
        }
    }
}

/// A tokio runtime, named by its [`Handle`], the `Runtime` itself, or a reference to either.
pub trait AsHandle {
    /// The runtime's handle.
    fn as_handle(&self) -> &Handle;
}

impl AsHandle for Handle {
    fn as_handle(&self) -> &Handle {
        self
    }
}

impl AsHandle for Runtime {
    fn as_handle(&self) -> &Handle {
        self.handle()
    }
}

impl<T: AsHandle + ?Sized> AsHandle for &T {
    fn as_handle(&self) -> &Handle {
        (**self).as_handle()
    }
}

//! The Python objects pyo3-async calls: each looked up once per process, through a typed
//! accessor, so that a misspelt name is a compile error rather than a runtime `AttributeError`.
//!
//! The standard library's and trio's functions come from their modules; the few functions
//! that must be written in Python (`async def` wrappers for tasks) live in `helpers.py`,
//! loaded as a private module on first use.

use std::ffi::CString;

use pyo3::prelude::*;
use pyo3::types::PyModule;

use crate::lazy::Lazy;

/// `fn name(py) -> PyResult<&Bound<PyAny>>` for `module.attribute`.
macro_rules! imported {
    ($(#[$doc:meta])* $name:ident = $module:literal . $attribute:literal) => {
        $(#[$doc])*
        pub(crate) fn $name(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
            static CELL: Lazy<Py<PyAny>> = Lazy::new();
            CELL.get_or_try_init(py, || {
                PyResult::Ok(py.import($module)?.getattr($attribute)?.unbind())
            })
            .map(|function| function.bind(py))
        }
    };
}

imported!(
    /// `types.CoroutineType`, the type of `async def` coroutines.
    coroutine_type = "types"."CoroutineType"
);

/// `fn name(py) -> PyResult<&Bound<PyAny>>` for a function of `helpers.py` (or of another
/// glue module: `name in loops`).
macro_rules! helper {
    ($(#[$doc:meta])* $name:ident) => {
        helper!($(#[$doc])* $name in helpers);
    };
    ($(#[$doc:meta])* $name:ident in $module:ident) => {
        $(#[$doc])*
        pub(crate) fn $name(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
            static CELL: Lazy<Py<PyAny>> = Lazy::new();
            CELL.get_or_try_init(py, || {
                PyResult::Ok($module(py)?.getattr(stringify!($name))?.unbind())
            })
            .map(|function| function.bind(py))
        }
    };
}

imported!(
    /// `asyncio.get_running_loop`: the running loop, `RuntimeError` outside one.
    get_running_loop = "asyncio"."get_running_loop"
);
imported!(
    /// `asyncio._get_running_loop`: the running loop, or `None`.
    running_loop = "asyncio"."_get_running_loop"
);
imported!(
    /// `asyncio.current_task`.
    current_task = "asyncio"."current_task"
);
imported!(
    /// `asyncio.isfuture`.
    isfuture = "asyncio"."isfuture"
);
imported!(
    /// `concurrent.futures.Future`.
    concurrent_future = "concurrent.futures"."Future"
);
imported!(
    /// `sys.exc_info`: the exception being handled, as `raise` chains it.
    exc_info = "sys"."exc_info"
);
imported!(
    /// `contextvars.copy_context`.
    copy_context = "contextvars"."copy_context"
);
imported!(
    /// `contextvars.Context`: a new, empty context.
    new_context = "contextvars"."Context"
);
imported!(
    /// `inspect.isawaitable`.
    isawaitable = "inspect"."isawaitable"
);
imported!(
    /// `trio.lowlevel.current_task`.
    trio_current_task = "trio.lowlevel"."current_task"
);
imported!(
    /// `trio.lowlevel.current_trio_token`: the run's token, `RuntimeError` outside one.
    trio_current_token = "trio.lowlevel"."current_trio_token"
);
imported!(
    /// `trio.lowlevel.reschedule`.
    trio_reschedule = "trio.lowlevel"."reschedule"
);
imported!(
    /// `trio.lowlevel.wait_task_rescheduled`.
    trio_wait_task_rescheduled = "trio.lowlevel"."wait_task_rescheduled"
);
imported!(
    /// `trio.lowlevel.checkpoint`.
    trio_checkpoint = "trio.lowlevel"."checkpoint"
);
imported!(
    /// `trio.lowlevel.Abort`.
    trio_abort = "trio.lowlevel"."Abort"
);
imported!(
    /// `trio.CancelScope`.
    trio_cancel_scope = "trio"."CancelScope"
);

helper!(
    /// Runs an awaitable as an asyncio task reporting to a completion.
    start_asyncio_task
);
helper!(
    /// `AsyncioShutdown`: a new record of an asyncio loop's tasks and shutdown.
    asyncio_shutdown
);
helper!(
    /// The finished stand-ins of a `WakeupFuture`: a resolved and a cancelled asyncio future.
    finished_futures
);
helper!(
    /// Whether a callback is a C asyncio task's wake-up.
    is_task_wakeup
);
helper!(
    /// Runs an awaitable as a trio system task reporting to a completion.
    start_trio_task
);
helper!(
    /// Watches a home's wake signal on an asyncio loop (`add_reader`).
    watch_asyncio
);
helper!(
    /// Has an asyncio loop keep a home's keeper (a timer due in decades).
    keep_asyncio
);
helper!(
    /// `call_in_a_frame(function, *args)`: calls a loop's thread-safe entry point from a
    /// Python frame, for a thread that has none (uvloop's debug mode needs one on 3.15).
    call_in_a_frame
);
helper!(
    /// Watches a home's wake signal on a trio run (a system task).
    watch_trio
);
helper!(
    /// Closes a coroutine that will never run.
    close_unstarted
);
helper!(
    /// The pump of a `PyAsyncIter`: iterates an async iterator into a channel.
    pump_async_iter in pump
);
helper!(
    /// Adds a traceback entry named after a Rust function to an exception.
    add_frame in frames
);
helper!(
    /// A never-run generator whose frame stands for a suspended Rust function.
    frame_owner in frames
);
helper!(
    /// The code object of a Rust function's frames.
    frame_code in frames
);

helper!(
    /// Runs an awaitable as the main task of a new loop (`asyncio.run`, `uvloop.run`,
    /// `trio.run`) on this thread.
    run_loop in loops
);
helper!(
    /// `run_loop` in a new Python thread, joined.
    run_loop_in_thread in loops
);
helper!(
    /// A loop running in a Python thread of its own until stopped.
    loop_thread in loops
);
helper!(
    /// `loops.run_until_complete(loop, awaitable)`: on a loop that exists but does not run.
    run_until_complete in loops
);
helper!(
    /// `loops.runs_a_loop()`: whether this thread runs an event loop now.
    runs_a_loop in loops
);

helper!(
    /// Marks exported async functions for `inspect.iscoroutinefunction` (3.12+).
    mark_coroutine_functions in coroutine_functions
);

/// `fn name(py) -> PyResult<&Bound<PyModule>>`: a glue file, as a private module of its own,
/// loaded on first use.
macro_rules! glue_module {
    ($name:ident = $file:literal as $module:literal) => {
        fn $name(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
            static MODULE: Lazy<Py<PyModule>> = Lazy::new();
            MODULE
                .get_or_try_init(py, || {
                    let code = CString::new(include_str!($file))?;
                    let path = CString::new(concat!("pyo3_async/", $file))?;
                    let module = CString::new($module)?;
                    PyResult::Ok(PyModule::from_code(py, &code, &path, &module)?.unbind())
                })
                .map(|module| module.bind(py))
        }
    };
}

glue_module!(helpers = "helpers.py" as "pyo3_async._helpers");
glue_module!(loops = "loops.py" as "pyo3_async._loops");
glue_module!(frames = "frames.py" as "pyo3_async._frames");
glue_module!(pump = "pump.py" as "pyo3_async._pump");
glue_module!(coroutine_functions = "coroutine_functions.py" as "pyo3_async._coroutine_functions");

/// The trap class of `trio.lowlevel.wait_task_rescheduled`, where trio 0.35 keeps it; `None`
/// with another layout (the public function is used then).
pub(crate) fn trio_wait_task_rescheduled_trap(py: Python<'_>) -> Option<&Bound<'_, PyAny>> {
    static TRAP: Lazy<Option<Py<PyAny>>> = Lazy::new();
    TRAP.get_or_init(py, || {
        py.import("trio._core._traps")
            .and_then(|traps| traps.getattr("WaitTaskRescheduled"))
            .ok()
            .map(Bound::unbind)
    })
    .as_ref()
    .map(|trap| trap.bind(py))
}

/// What pyo3-async reads of sniffio: its documented ways for a library to name itself, and its
/// own answer.
pub(crate) struct Sniffio {
    /// `sniffio.thread_local`: its `name`, if set, names the library running this thread.
    pub(crate) thread_local: Py<PyAny>,
    /// `sniffio.current_async_library_cvar`: if set, names the library running this task.
    pub(crate) name_var: Py<PyAny>,
    /// `sniffio.current_async_library`.
    pub(crate) current_async_library: Py<PyAny>,
}

/// sniffio, or `None` when it is not installed.
pub(crate) fn sniffio(py: Python<'_>) -> Option<&Sniffio> {
    static SNIFFIO: Lazy<Option<Sniffio>> = Lazy::new();
    SNIFFIO
        .get_or_init(py, || {
            let sniffio = py.import("sniffio").ok()?;
            let get = |name: &str| sniffio.getattr(name).ok().map(Bound::unbind);
            Some(Sniffio {
                thread_local: get("thread_local")?,
                name_var: get("current_async_library_cvar")?,
                current_async_library: get("current_async_library")?,
            })
        })
        .as_ref()
}

/// `trio.Cancelled`, once a program has imported trio (only such a program can hold one).
pub(crate) fn trio_cancelled(py: Python<'_>) -> Option<&Bound<'_, PyAny>> {
    static CANCELLED: Lazy<Py<PyAny>> = Lazy::new();
    // A failed initialisation is not cached: look again until trio is imported.
    CANCELLED
        .get_or_try_init(py, || {
            let trio = py.import("sys")?.getattr("modules")?.get_item("trio")?;
            PyResult::Ok(trio.getattr("Cancelled")?.unbind())
        })
        .ok()
        .map(|cancelled| cancelled.bind(py))
}

//! A snapshot of what pyo3-async holds in this process, for dashboards and leak hunts.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::census;
use crate::home;

/// What pyo3-async holds right now: a snapshot from [`stats`].
///
/// Counted where things begin and end (once per object, never per poll), so reading it costs
/// a few atomic loads and a walk over the loops, and keeping it costs the hot paths nothing:
/// a coroutine that never suspends is never counted. Taken while other threads work, it is as
/// exact as its moment.
///
/// ```
/// let stats = pyo3_async::stats();
/// // A process that exported nothing yet holds nothing.
/// assert_eq!(stats.suspended_coroutines, 0);
/// println!("{stats:?}");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Event loops (asyncio loops, trio runs) that pyo3-async serves: each has a *home* with
    /// a wake signal, kept while anything of the bridge uses the loop.
    pub loops: usize,
    /// Jobs queued for a loop's thread (wake-ups and calls from other threads), not yet run.
    pub queued_jobs: usize,
    /// Exported coroutines (and generator steps) that suspended on a loop and have not
    /// finished: what a leak of forgotten Rust coroutines makes grow.
    pub suspended_coroutines: usize,
    /// Python awaitables started as tasks on a loop for Rust callers
    /// ([`EventLoop::spawn`](crate::EventLoop::spawn), or a `PyFuture` a coroutine could not
    /// delegate) whose outcome has not been handed over yet. (A delegated `PyFuture` runs
    /// inside its coroutine's task and counts with the coroutine.)
    pub python_tasks: usize,
    /// [`PyAsyncIter`](crate::PyAsyncIter) pumps: Python tasks iterating an async iterator
    /// for Rust, not finished.
    pub async_iter_pumps: usize,
}

/// What pyo3-async holds right now (see [`Stats`]); callable from any thread.
///
/// ```
/// let stats = pyo3_async::stats();
/// assert_eq!(stats.queued_jobs, 0, "no loop, no queue");
/// ```
pub fn stats() -> Stats {
    let queues = home::census();
    Stats {
        loops: queues.len(),
        queued_jobs: queues.iter().sum(),
        suspended_coroutines: census::SUSPENDED_COROUTINES.get(),
        python_tasks: census::PYTHON_TASKS.get(),
        async_iter_pumps: census::ASYNC_ITER_PUMPS.get(),
    }
}

/// [`stats`] for Python: a dict of the same fields. Add it to a module in one line, and
/// Python code (a health endpoint, a metrics exporter) can read it.
///
/// ```
/// use pyo3::prelude::*;
///
/// #[pymodule]
/// fn service(m: &Bound<'_, PyModule>) -> PyResult<()> {
///     m.add_function(wrap_pyfunction!(pyo3_async::py_stats, m)?)
/// }
/// # fn main() -> PyResult<()> {
/// #     Python::initialize();
/// #     Python::attach(|py| {
/// #         let module = PyModule::new(py, "service")?;
/// #         service(&module)?;
/// #         let stats = module.getattr("pyo3_async_stats")?.call0()?;
/// #         assert_eq!(stats.get_item("suspended_coroutines")?.extract::<usize>()?, 0);
/// #         Ok(())
/// #     })
/// # }
/// ```
#[pyfunction]
#[pyo3(name = "pyo3_async_stats")]
pub fn py_stats(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let stats = stats();
    let dict = PyDict::new(py);
    dict.set_item("loops", stats.loops)?;
    dict.set_item("queued_jobs", stats.queued_jobs)?;
    dict.set_item("suspended_coroutines", stats.suspended_coroutines)?;
    dict.set_item("python_tasks", stats.python_tasks)?;
    dict.set_item("async_iter_pumps", stats.async_iter_pumps)?;
    Ok(dict)
}

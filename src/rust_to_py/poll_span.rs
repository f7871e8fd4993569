//! `tracing` spans around the polls of exported coroutines and generators (feature `tracing`).
//!
//! One span per coroutine (or per generator, shared by its items' steps), made at its first
//! resumption and entered around every `send`/`throw`/`close` of it, so that the Rust
//! function's own spans and events nest under it, and a subscriber sees which Rust call a
//! slow task is in. Fields: `function` (the label, `Client.fetch`), `loop` (`asyncio` or
//! `trio`) and `task` (the asyncio or trio task's name; for a generator, the task that
//! pulled its latest item). Without a subscriber interested in
//! target `pyo3_async` at level `INFO`, a span is disabled and costs one check.

use pyo3::intern;
use pyo3::prelude::*;
use tracing::field;
use tracing::Span;

use crate::backend::Backend;
use crate::glue;

/// The span of one coroutine.
pub(crate) fn coroutine(function: &str) -> Span {
    tracing::info_span!(target: "pyo3_async", "coroutine", function, r#loop = field::Empty, task = field::Empty)
}

/// The span of one async generator.
pub(crate) fn async_generator(function: &str) -> Span {
    tracing::info_span!(target: "pyo3_async", "async_generator", function, r#loop = field::Empty, task = field::Empty)
}

/// Records the loop and task that run `span`'s coroutine, from inside that task (its first
/// resumption). Only for an enabled span: it costs Python calls.
pub(crate) fn record_task(py: Python<'_>, span: &Span) {
    if span.is_disabled() {
        return;
    }
    let Ok(backend) = Backend::current(py) else {
        return;
    };
    let name = match backend {
        Backend::Asyncio => glue::current_task(py)
            .and_then(|current| current.call0())
            .and_then(|task| task.call_method0(intern!(py, "get_name"))),
        Backend::Trio => glue::trio_current_task(py)
            .and_then(|current| current.call0())
            .and_then(|task| task.getattr(intern!(py, "name"))),
    };
    span.record(
        "loop",
        match backend {
            Backend::Asyncio => "asyncio",
            Backend::Trio => "trio",
        },
    );
    if let Ok(name) = name.and_then(|name| name.str()) {
        span.record("task", name.to_string_lossy().as_ref());
    }
}

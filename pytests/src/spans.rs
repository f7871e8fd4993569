//! A `tracing` subscriber that knows which span each thread is in, and each span's name and
//! fields: enough to tell whether a body runs inside its `#[instrument]` span
//! (test_macro_shapes.py) and what pyo3-async's own spans record (test_introspection.py).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use pyo3::prelude::*;

struct CurrentSpans;

/// A span as the subscriber saw it.
#[derive(Clone, Default)]
struct Seen {
    name: &'static str,
    fields: HashMap<String, String>,
    /// Handles to the span alive: it is forgotten when the last closes (the suite makes
    /// millions of spans).
    handles: usize,
}

static SPANS: OnceLock<Mutex<HashMap<u64, Seen>>> = OnceLock::new();

thread_local! {
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Writes each recorded field into a map.
struct Fields<'a>(&'a mut HashMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

fn with_spans<R>(f: impl FnOnce(&mut HashMap<u64, Seen>) -> R) -> Option<R> {
    let mut spans = SPANS.get_or_init(Default::default).lock().ok()?;
    Some(f(&mut spans))
}

impl tracing::Subscriber for CurrentSpans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut seen = Seen {
            name: span.metadata().name(),
            fields: HashMap::new(),
            handles: 1,
        };
        span.record(&mut Fields(&mut seen.fields));
        with_spans(|spans| spans.insert(id, seen));
        tracing::span::Id::from_u64(id)
    }

    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        with_spans(|spans| {
            if let Some(seen) = spans.get_mut(&span.into_u64()) {
                values.record(&mut Fields(&mut seen.fields));
            }
        });
    }

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn clone_span(&self, span: &tracing::span::Id) -> tracing::span::Id {
        with_spans(|spans| {
            if let Some(seen) = spans.get_mut(&span.into_u64()) {
                seen.handles += 1;
            }
        });
        span.clone()
    }

    fn try_close(&self, span: tracing::span::Id) -> bool {
        with_spans(|spans| {
            let id = span.into_u64();
            let closed = spans.get_mut(&id).is_some_and(|seen| {
                seen.handles -= 1;
                seen.handles == 0
            });
            if closed {
                spans.remove(&id);
            }
            closed
        })
        .unwrap_or(false)
    }

    fn event(&self, _: &tracing::Event<'_>) {}

    fn enter(&self, span: &tracing::span::Id) {
        ENTERED.with(|entered| entered.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, _: &tracing::span::Id) {
        ENTERED.with(|entered| entered.borrow_mut().pop());
    }
}

fn current() -> Option<Seen> {
    let id = ENTERED.with(|entered| entered.borrow().last().copied())?;
    with_spans(|spans| spans.get(&id).cloned()).flatten()
}

/// The name of the span this thread is in, if any.
pub(crate) fn current_span() -> Option<&'static str> {
    current().map(|seen| seen.name)
}

/// The name and fields of the span this thread is in, if any.
pub(crate) fn current_span_fields() -> Option<(&'static str, HashMap<String, String>)> {
    current().map(|seen| (seen.name, seen.fields))
}

/// Installs the subscriber for the whole process.
pub(crate) fn install() {
    let _ = tracing::subscriber::set_global_default(CurrentSpans);
}

/// `current_span()` where the coroutine is created: outside any span.
#[pyfunction]
pub(crate) fn span_at_call() -> Option<&'static str> {
    current_span()
}

//! A Python async iterator consumed as a Rust stream.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use event_listener::EventListener;
use futures::Stream;
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;

use crate::backend::Backend;
use crate::glue;
use crate::py_to_rust::async_iter_channel::{Channel, Pump};
use crate::py_to_rust::event_loop::EventLoop;
use crate::task::Outcome;

/// Items buffered between the pump and the consumer, unless chosen otherwise. Enough for a
/// consumer on another core to keep up: with 64, a stream of small items consumed on tokio
/// went in lockstep (the pump filled the buffer while the consumer's thread woke up, then
/// waited for room, a wake-up of the loop), at about 1 µs an item against 250 ns (S6).
const DEFAULT_CAPACITY: usize = 256;

/// A Python async iterable (an async generator, any object with `__aiter__`) as a Rust
/// [`Stream`], `Send`, consumed from any thread or executor.
///
/// A *pump* task on the iterable's event loop iterates it with Python's own `async for`, so
/// every step of the iterator starts and ends in that one task (trio and anyio cancel scopes
/// inside a generator stay intact), and the first iteration happens on the loop thread, where
/// asyncio's async-generator hooks see it. Items cross over through a bounded buffer: when
/// `capacity` items wait, the pump waits too, so memory stays bounded. The pump hands items
/// over in batches of a quarter of the buffer, or as soon as the iterator suspends, and the
/// consumer takes everything buffered at once: a busy stream crosses threads in batches, the
/// pump filling the next ones while the consumer wakes up and takes one. (An iterator that
/// blocks its loop between items without suspending, as a synchronous read inside an async
/// generator does, delays them until then.)
///
/// An exception raised by the iterator is yielded as `Err` (its type kept) and ends the
/// stream; so does the loop closing under it (a `RuntimeError`). Dropping the stream ends the
/// pump: a step under way is cancelled (only that step: the decision is taken on the loop's
/// thread), then the iterator's `aclose()` runs to its end; if it fails, the failure goes to
/// the loop's exception handler (trio: `sys.unraisablehook`). An iterator that runs on
/// without suspending learns of it at the end of its batch: it may be stepped up to a quarter
/// of the buffer further, and those items are released on the loop's thread.
///
/// ```
/// use futures::StreamExt;
/// use pyo3::prelude::*;
/// use pyo3_async::{EventLoop, PyAsyncIter};
///
/// /// Sums what an async generator yields, from a Rust thread.
/// #[pyfunction]
/// fn sum_in_background(py: Python<'_>, generator: &Bound<'_, PyAny>) -> PyResult<()> {
///     let mut items = PyAsyncIter::new(&EventLoop::current(py)?, generator)?;
///     std::thread::spawn(move || {
///         let total: i64 = futures::executor::block_on(async {
///             let mut total = 0;
///             while let Some(Ok(item)) = items.next().await {
///                 total += Python::attach(|py| item.extract::<i64>(py).unwrap_or(0));
///             }
///             total
///         });
///         println!("{total}");
///     });
///     Ok(())
/// }
/// ```
pub struct PyAsyncIter {
    channel: Arc<Channel>,
    /// Items taken from the buffer, handed out one by one.
    batch: VecDeque<Outcome>,
    listener: Option<EventListener>,
    finished: bool,
}

impl PyAsyncIter {
    /// Iterates `iterable` on `event_loop`, buffering up to 256 items (see
    /// [`with_capacity`](Self::with_capacity) for fewer, bigger ones).
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::{EventLoop, PyAsyncIter};
    ///
    /// #[pyfunction]
    /// fn consume(py: Python<'_>, generator: &Bound<'_, PyAny>) -> PyResult<()> {
    ///     let stream = PyAsyncIter::new(&EventLoop::current(py)?, generator)?;
    ///     # drop(stream);
    ///     Ok(())
    /// }
    /// ```
    pub fn new(event_loop: &EventLoop, iterable: &Bound<'_, PyAny>) -> PyResult<Self> {
        Self::with_capacity(event_loop, iterable, DEFAULT_CAPACITY)
    }

    /// Iterates `iterable` on `event_loop`, buffering up to `capacity` items (at least one).
    ///
    /// Memory is bounded by twice the capacity: the buffer, and the batch the consumer took
    /// from it. A smaller buffer suits big items; a stream of small ones consumed on another
    /// thread slows down below a few hundred (the two threads take turns).
    ///
    /// ```
    /// use pyo3::prelude::*;
    /// use pyo3_async::{EventLoop, PyAsyncIter};
    ///
    /// #[pyfunction]
    /// fn consume_slowly(py: Python<'_>, generator: &Bound<'_, PyAny>) -> PyResult<()> {
    ///     let stream = PyAsyncIter::with_capacity(&EventLoop::current(py)?, generator, 4)?;
    ///     # drop(stream);
    ///     Ok(())
    /// }
    /// ```
    pub fn with_capacity(
        event_loop: &EventLoop,
        iterable: &Bound<'_, PyAny>,
        capacity: usize,
    ) -> PyResult<Self> {
        let py = iterable.py();
        if !iterable.hasattr(intern!(py, "__aiter__"))? {
            return Err(PyTypeError::new_err(format!(
                "'async for' requires an object with __aiter__ method, got {}",
                iterable.get_type().name()?
            )));
        }
        let channel = Arc::new(Channel::new(
            py,
            capacity,
            Arc::clone(event_loop.home()),
            event_loop.backend(),
        ));
        let scope = match event_loop.backend() {
            Backend::Trio => Some(glue::trio_cancel_scope(py)?.call0()?),
            Backend::Asyncio => None,
        };
        let pump = Py::new(py, Pump::new(Arc::clone(&channel)))?;
        let pump = glue::pump_async_iter(py)?.call1((pump, iterable, scope))?;
        // The pump reports through the channel; its own outcome is of no interest.
        drop(event_loop.spawn(&pump)?.detach());
        channel.home.depend(py, Arc::<Channel>::downgrade(&channel));
        Ok(PyAsyncIter {
            channel,
            batch: VecDeque::new(),
            listener: None,
            finished: false,
        })
    }
}

impl Stream for PyAsyncIter {
    type Item = PyResult<Py<PyAny>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(item) = this.batch.pop_front() {
                return Poll::Ready(Some(item));
            }
            if this.finished {
                return Poll::Ready(None);
            }
            {
                let mut buffer = this.channel.lock();
                if !buffer.items.is_empty() {
                    std::mem::swap(&mut this.batch, &mut buffer.items);
                    drop(buffer);
                    this.channel.space.notify(1);
                    continue;
                }
                if buffer.ended {
                    this.finished = true;
                    continue;
                }
            }
            match &mut this.listener {
                None => this.listener = Some(this.channel.items.listen()),
                Some(listener) => {
                    if Pin::new(listener).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.listener = None;
                }
            }
        }
    }
}

impl Drop for PyAsyncIter {
    fn drop(&mut self) {
        self.channel.lock().closed = true;
        // A pump waiting for room sees `closed` and closes the iterator. One in a step has
        // that step cancelled, and starts no other: decided on the loop's thread, where the
        // pump runs, so the cancellation can only land in a step, never in `aclose()`.
        self.channel.space.notify(usize::MAX);
        let channel = Arc::clone(&self.channel);
        self.channel
            .home
            .run(Box::new(move |py| channel.consumer_left(py)));
    }
}

//! A Python async iterator consumed as a Rust stream.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use event_listener::{Event, EventListener};
use futures::Stream;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;

use crate::backend::Backend;
use crate::census;
use crate::glue;
use crate::home::{Dependent, Home};
use crate::py_to_rust::event_loop::EventLoop;
use crate::rust_to_py::Coroutine;
use crate::task::Outcome;

/// Items buffered between the pump and the consumer, unless chosen otherwise.
const DEFAULT_CAPACITY: usize = 64;

/// A Python async iterable (an async generator, any object with `__aiter__`) as a Rust
/// [`Stream`], `Send`, consumed from any thread or executor.
///
/// A *pump* task on the iterable's event loop iterates it with Python's own `async for`, so
/// every step of the iterator starts and ends in that one task (trio and anyio cancel scopes
/// inside a generator stay intact), and the first iteration happens on the loop thread, where
/// asyncio's async-generator hooks see it. Items cross over through a bounded buffer: when
/// `capacity` items wait, the pump waits too, so memory stays bounded. The consumer takes
/// everything buffered at once, so a busy stream crosses threads in batches.
///
/// An exception raised by the iterator is yielded as `Err` (its type kept) and ends the
/// stream; so does the loop closing under it (a `RuntimeError`). Dropping the stream ends the
/// pump: a step under way is cancelled (only that step: the decision is taken on the loop's
/// thread), then the iterator's `aclose()` runs to its end; if it fails, the failure goes to
/// the loop's exception handler (trio: `sys.unraisablehook`).
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
    /// Iterates `iterable` on `event_loop`, buffering up to 64 items.
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
        let channel = Arc::new(Channel {
            capacity: capacity.max(1),
            home: Arc::clone(event_loop.home()),
            backend: event_loop.backend(),
            buffer: Mutex::new(Buffer::default()),
            items: Event::new(),
            space: Event::new(),
        });
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
        let pulling = {
            let mut buffer = self.channel.lock();
            buffer.closed = true;
            buffer.pulling
        };
        // A pump waiting for room sees `closed` and closes the iterator. One in a step has
        // that step cancelled — decided on the loop's thread, where the pump runs, so the
        // cancellation can only land in a step, never in `aclose()`.
        self.channel.space.notify(usize::MAX);
        if pulling {
            let channel = Arc::clone(&self.channel);
            self.channel
                .home
                .run(Box::new(move |py| channel.cancel_pull(py)));
        }
    }
}

/// The buffer between the pump (on the loop thread) and the consumer (anywhere).
struct Channel {
    capacity: usize,
    home: Arc<Home>,
    backend: Backend,
    buffer: Mutex<Buffer>,
    /// Notified when items arrive or the iterator ends.
    items: Event,
    /// Notified when the consumer made room or went away.
    space: Event,
}

#[derive(Default)]
struct Buffer {
    items: VecDeque<Outcome>,
    /// The pump is in a step of the iterator.
    pulling: bool,
    /// The iterator is exhausted or failed: no more items will come.
    ended: bool,
    /// The consumer is gone.
    closed: bool,
    /// Items were pushed since the consumer was last notified; their announcement is queued.
    unannounced: bool,
    /// Cancels the pump's step: the trio scope's or the asyncio task's `cancel`.
    cancel: Option<Py<PyAny>>,
}

impl Channel {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Room for one more item: the pump may start a step (`Some(true)`); the consumer is gone
    /// (`Some(false)`); the buffer is full (`None`).
    fn reserve(&self) -> Option<bool> {
        self.reserve_in(&mut self.lock())
    }

    fn reserve_in(&self, buffer: &mut Buffer) -> Option<bool> {
        if buffer.closed {
            return Some(false);
        }
        if buffer.items.len() < self.capacity {
            buffer.pulling = true;
            return Some(true);
        }
        None
    }

    /// Waits until an item may be pulled (then reserves it), or the consumer is gone (false).
    async fn wait_for_space(&self) -> bool {
        loop {
            let listener = {
                if let Some(room) = self.reserve() {
                    return room;
                }
                // Registered before looking again: the consumer notifies after taking items.
                self.space.listen()
            };
            if let Some(room) = self.reserve() {
                return room;
            }
            listener.await;
        }
    }

    /// Buffers an item, then reserves room for the next as [`reserve`](Self::reserve) does,
    /// under the same lock: one call and one lock per item for the pump.
    ///
    /// Waking a consumer thread costs a system call and two context switches, so items that an
    /// iterator produces without suspending are announced together: when the buffer is full,
    /// or, through the loop's home, as soon as the pump lets the loop run (the iterator
    /// suspended).
    fn push(self: &Arc<Self>, item: Outcome) -> Option<bool> {
        let (announce, room) = {
            let mut buffer = self.lock();
            buffer.pulling = false;
            buffer.items.push_back(item);
            let announce = if buffer.items.len() >= self.capacity {
                buffer.unannounced = false;
                Some(true)
            } else if buffer.unannounced {
                None
            } else {
                buffer.unannounced = true;
                Some(false)
            };
            (announce, self.reserve_in(&mut buffer))
        };
        match announce {
            Some(true) => {
                self.items.notify(1);
            }
            Some(false) => {
                let channel = Arc::clone(self);
                self.home.run(Box::new(move |_| {
                    channel.announce();
                    Ok(())
                }));
            }
            None => {}
        }
        room
    }

    /// Notifies the consumer of items pushed without notice.
    fn announce(&self) {
        let unannounced = std::mem::take(&mut self.lock().unannounced);
        if unannounced {
            self.items.notify(1);
        }
    }

    /// No more items: after `last`, if any.
    fn end(&self, last: Option<Outcome>) {
        let cancel = {
            let mut buffer = self.lock();
            if buffer.ended {
                return;
            }
            buffer.items.extend(last);
            buffer.pulling = false;
            buffer.ended = true;
            buffer.unannounced = false;
            buffer.cancel.take()
        };
        // Python objects are released outside the lock: their finalisers may run anything.
        drop(cancel);
        self.items.notify(1);
    }

    /// On the loop's thread: cancels the pump's step, if one is still under way.
    fn cancel_pull(&self, py: Python<'_>) -> PyResult<()> {
        let cancel = {
            let buffer = self.lock();
            match (&buffer.cancel, buffer.pulling) {
                (Some(cancel), true) => cancel.clone_ref(py),
                _ => return Ok(()),
            }
        };
        cancel.bind(py).call0().map(drop)
    }
}

impl Dependent for Channel {
    fn loop_died(&self, _py: Python<'_>) {
        self.end(Some(Err(PyRuntimeError::new_err(
            "the async iterator's event loop stopped before it was exhausted",
        ))));
    }
}

/// The channel as the pump (`helpers.pump_async_iter`) sees it; it lives as long as the
/// pump's Python task (counted in [`stats`](crate::stats())).
#[pyclass(frozen)]
struct Pump {
    channel: Arc<Channel>,
}

impl Pump {
    fn new(channel: Arc<Channel>) -> Self {
        census::ASYNC_ITER_PUMPS.add();
        Pump { channel }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        census::ASYNC_ITER_PUMPS.remove();
    }
}

#[pymethods]
impl Pump {
    /// What cancels a step: the step's cancel scope (trio) or the pump's task (asyncio).
    fn cancel_with(&self, cancel: Py<PyAny>) {
        let previous = self.channel.lock().cancel.replace(cancel);
        drop(previous);
    }

    fn reserve(&self) -> Option<bool> {
        self.channel.reserve()
    }

    /// Waits for room: `True` (reserved), or `False` when the consumer is gone.
    fn space(&self) -> Coroutine {
        let channel = Arc::clone(&self.channel);
        let backend = self.channel.backend;
        Coroutine::new(async move { PyResult::Ok(channel.wait_for_space().await) })
            .without_unawaited_warning()
            .with_backend(backend)
    }

    /// Buffers an item; then what `reserve` answers for the next.
    fn push(&self, item: Py<PyAny>) -> Option<bool> {
        self.channel.push(Ok(item))
    }

    /// The iterator ended: exhausted (`None`) or with an exception.
    fn finish(&self, exception: Option<&Bound<'_, PyAny>>) {
        let last = exception.map(|exception| Err(PyErr::from_value(exception.clone())));
        self.channel.end(last);
    }

    fn closed(&self) -> bool {
        self.channel.lock().closed
    }

    /// Reports a failed `aclose()` where no loop has an exception handler (trio).
    fn report_unraisable(&self, exception: &Bound<'_, PyAny>, iterator: &Bound<'_, PyAny>) {
        PyErr::from_value(exception.clone()).write_unraisable(exception.py(), Some(iterator));
    }
}

//! A Python async iterator consumed as a Rust stream.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use event_listener::{Event, EventListener};
use futures::Stream;
use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::iterator::PySendResult;

use crate::event_loop::EventLoop;
use crate::py_to_rust::completion::Outcome;
use crate::py_to_rust::delegation::await_iterator;
use crate::py_to_rust::spawn::helper;
use crate::py_to_rust::PyFuture;
use crate::rust_to_py::Coroutine;
use crate::wake_queue::{Job, WakeQueue};

/// Items buffered between the pump and the consumer, unless chosen otherwise.
const DEFAULT_CAPACITY: usize = 64;

/// A Python async iterable (an async generator, any object with `__aiter__`) as a Rust
/// [`Stream`], `Send`, consumed from any thread or executor.
///
/// A *pump* task on the iterable's event loop iterates it (so the first iteration happens on
/// the loop thread, where asyncio's async-generator hooks see it) and hands items over through
/// a bounded buffer: when `capacity` items wait, the pump waits too, so memory stays bounded.
/// The consumer takes everything buffered at once, so a busy stream crosses threads in
/// batches, not once per item.
///
/// An exception raised by the iterator is yielded as `Err` (its type kept) and ends the
/// stream. Dropping the stream ends the pump and `aclose()`s the Python generator on its loop
/// (a pending `__anext__` is cancelled first).
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
    /// The pump task; dropping it cancels the pump.
    pump: Option<PyFuture>,
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
            buffer: Mutex::new(Buffer::default()),
            items: Event::new(),
            space: Event::new(),
        });
        let pump = Coroutine::new(pump(Arc::clone(&channel), iterable.clone().unbind()));
        let pump = event_loop.spawn(Bound::new(py, pump)?.as_any())?;
        Ok(PyAsyncIter {
            channel,
            batch: VecDeque::new(),
            listener: None,
            finished: false,
            pump: Some(pump),
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
        self.channel.space.notify(usize::MAX);
        // A pump waiting for space sees `closed` and closes the generator itself; one waiting
        // for the generator is cancelled, which interrupts that `__anext__`.
        if let Some(pump) = self.pump.take() {
            if !pulling {
                drop(pump.detach());
            }
        }
    }
}

/// The buffer between the pump (on the loop thread) and the consumer (anywhere).
struct Channel {
    capacity: usize,
    buffer: Mutex<Buffer>,
    /// Notified when items arrive or the iterator ends.
    items: Event,
    /// Notified when the consumer made room or went away.
    space: Event,
}

#[derive(Default)]
struct Buffer {
    items: VecDeque<Outcome>,
    /// The pump is awaiting the iterator's `__anext__`.
    pulling: bool,
    /// The iterator is exhausted or failed: no more items will come.
    ended: bool,
    /// The consumer is gone.
    closed: bool,
    /// Items were pushed since the consumer was last notified; their announcement is queued.
    unannounced: bool,
}

impl Channel {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until an item may be pulled (then marks the pump pulling), or the consumer is
    /// gone (false).
    async fn wait_for_space(&self) -> bool {
        loop {
            let listener = {
                let mut buffer = self.lock();
                if buffer.closed {
                    return false;
                }
                if buffer.items.len() < self.capacity {
                    buffer.pulling = true;
                    return true;
                }
                // Registered under the lock: the consumer notifies after taking it.
                self.space.listen()
            };
            listener.await;
        }
    }

    /// Buffers an item. Waking a consumer thread costs a system call and two context
    /// switches, so items that a generator produces without suspending are announced together:
    /// when the pump stops (the buffer is full, the stream ended) or, through the loop's wake
    /// queue (`announcer`), as soon as the pump lets the loop run (the generator suspended).
    /// Without a wake queue, every item is announced as it comes.
    fn push(self: &Arc<Self>, item: Outcome, last: bool, announcer: Option<&Arc<WakeQueue>>) {
        let announce_now = {
            let mut buffer = self.lock();
            buffer.pulling = false;
            buffer.ended |= last;
            buffer.items.push_back(item);
            if last || buffer.items.len() >= self.capacity || announcer.is_none() {
                buffer.unannounced = false;
                true
            } else if buffer.unannounced {
                return;
            } else {
                buffer.unannounced = true;
                false
            }
        };
        match (announcer, announce_now) {
            (Some(queue), false) => {
                let channel = Arc::clone(self);
                queue.push(Job::Call(Box::new(move |_| channel.announce())));
            }
            _ => {
                self.items.notify(1);
            }
        }
    }

    /// Notifies the consumer of items pushed without notice.
    fn announce(&self) {
        let unannounced = std::mem::take(&mut self.lock().unannounced);
        if unannounced {
            self.items.notify(1);
        }
    }

    fn end(&self) {
        {
            let mut buffer = self.lock();
            buffer.pulling = false;
            buffer.ended = true;
            buffer.unannounced = false;
        }
        self.items.notify(1);
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// Ends the stream with an error if the pump is dropped before the iterator ended: its task
/// was dropped by a closed loop or a finished run, and no item will come any more.
struct EndOnDrop(Arc<Channel>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        {
            let mut buffer = self.0.lock();
            if buffer.ended {
                return;
            }
            buffer.ended = true;
            buffer.items.push_back(Err(PyRuntimeError::new_err(
                "the async iterator's event loop stopped before it was exhausted",
            )));
        }
        self.0.items.notify(1);
    }
}

/// The next item of an async iterator, as far as it can be had without suspending.
enum Next {
    Ready(Py<PyAny>),
    /// `__anext__()` suspended: the rest of its await, to run in the pump's task.
    Suspended(PyFuture),
}

/// Starts awaiting `iterator.__anext__()` right here. An item that is ready (a generator that
/// did not suspend for it) comes back without any task, channel or waker; an await that
/// suspends is handed to the pump's task as it stands, from its first suspension on.
fn next_item(iterator: &Bound<'_, PyAny>) -> PyResult<Next> {
    let py = iterator.py();
    let next = iterator.call_method0(intern!(py, "__anext__"))?;
    let Ok(await_method) = next.getattr(intern!(py, "__await__")) else {
        // A generator-based coroutine, or not awaitable at all: the general path knows those,
        // and gives the clear error.
        return PyFuture::new(&next).map(Next::Suspended);
    };
    let awaiting = await_iterator(await_method.call0()?)?;
    match awaiting.send(&py.None().into_bound(py))? {
        PySendResult::Return(item) => Ok(Next::Ready(item.unbind())),
        PySendResult::Next(first) => {
            let resume = helper(py, "Resume")?.call1((awaiting, first))?;
            PyFuture::new(&resume).map(Next::Suspended)
        }
    }
}

/// Runs on the event loop as a task: pulls items while there is room for them.
fn pump(channel: Arc<Channel>, iterable: Py<PyAny>) -> impl Future<Output = PyResult<()>> {
    // Owned by the future from the start: a task dropped before its first step ends the
    // stream too.
    let end_on_drop = EndOnDrop(Arc::clone(&channel));
    async move {
        let _end_on_drop = end_on_drop;
        pull(&channel, iterable).await
    }
}

async fn pull(channel: &Arc<Channel>, iterable: Py<PyAny>) -> PyResult<()> {
    let (iterator, announcer) = Python::attach(|py| {
        // The pump runs on its loop's thread: the handle captured here has the wake queue.
        let announcer = EventLoop::current(py)
            .ok()
            .and_then(|event_loop| event_loop.queue);
        let iterator = iterable
            .bind(py)
            .call_method0(intern!(py, "__aiter__"))
            .map(Bound::unbind);
        (iterator, announcer)
    });
    let announcer = announcer.as_ref();
    let iterator = match iterator {
        Ok(iterator) => iterator,
        Err(err) => {
            channel.push(Err(err), true, announcer);
            return Ok(());
        }
    };
    while channel.wait_for_space().await {
        let outcome = match Python::attach(|py| next_item(iterator.bind(py))) {
            Ok(Next::Ready(item)) => Ok(item),
            Ok(Next::Suspended(next)) => next.await,
            Err(err) => Err(err),
        };
        match outcome {
            Ok(item) => channel.push(Ok(item), false, announcer),
            Err(_) if channel.is_closed() => break,
            Err(err) => {
                let exhausted = Python::attach(|py| err.is_instance_of::<PyStopAsyncIteration>(py));
                if exhausted {
                    channel.end();
                } else {
                    channel.push(Err(err), true, announcer);
                }
                return Ok(());
            }
        }
    }
    // The consumer is gone: close the generator here, on its loop.
    let aclose = Python::attach(|py| {
        let iterator = iterator.bind(py);
        match iterator.getattr(intern!(py, "aclose")) {
            Ok(aclose) => aclose
                .call0()
                .and_then(|closing| PyFuture::new(&closing))
                .map(Some),
            Err(_) => Ok(None),
        }
    });
    if let Ok(Some(closing)) = aclose {
        let _ = closing.await;
    }
    Ok(())
}

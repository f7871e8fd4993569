//! The channel of a [`PyAsyncIter`](crate::PyAsyncIter): a bounded buffer between its pump
//! (a task of the loop, `helpers.pump_async_iter`) and its consumer (any thread), and the
//! pump's Python face.
//!
//! The pump hands items over in batches. It appends each item to a Python list of its own
//! (the *pending* list, touched only on the loop's thread) and calls into Rust once per batch
//! ([`Pump::flush`]): a call into the extension per item cost more than the item itself
//! (S6 on 3.14: the call, its lock, and the reference pool drained at each call's entry,
//! while the consumer's thread fills it). A batch moves into the buffer:
//! - when the pump has pulled what it was granted (at most a quarter of the buffer, see
//!   [`Channel::grant_in`]): the pump flushes, and learns its next grant;
//! - when the iterator suspends mid-batch: the first item of a batch queues a flush job
//!   on the loop's home ([`Pump::flush_soon`]), which runs as soon as the pump lets the
//!   loop run, so a slow stream's items are not held back;
//! - when the iterator ends or the loop dies: before the end.
//!
//! The consumer going away is learnt three ways, none of them a call per item: at a flush
//! (no grant), at the first item of a batch (`flush_soon` answers whether the consumer is
//! there: every item that follows a suspension comes first in its batch), and through the
//! drop's job on the loop's thread, which marks the consumer gone (the `gone` list, tested
//! before each step) and cancels the step under way. An iterator that never suspends may
//! so be stepped to the end of its batch after the consumer left, never further.
//!
//! | the pump is | `pulling` | the pending list |
//! |---|---|---|
//! | granted `n` items, pulling them | true | fewer than `n` items |
//! | waiting for room (grant 0) | false | empty |
//! | stopped: the consumer is gone (`stop`), or the iterator ended (`finish`) | false | empty |
//!
//! Invariants:
//! - The buffer's items, the pending items and what is left of the pump's grant never exceed
//!   the capacity. The consumer only takes items away, and a grant is made only when the
//!   pending list is empty, from the room the buffer has then.
//! - The drop's job cancels the pump only while `pulling`: a pump that stopped says so before
//!   it runs `aclose()`, which a cancellation meant for a step must never reach.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use event_listener::Event;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::backend::Backend;
use crate::census;
use crate::home::{Dependent, Home};
use crate::rust_to_py::Coroutine;
use crate::task::Outcome;

/// The buffer between the pump (on the loop thread) and the consumer (anywhere).
pub(super) struct Channel {
    capacity: usize,
    /// The most items granted at once: a quarter of the buffer. The consumer is told of each
    /// batch, and its thread takes time to wake up (tens of microseconds on an idle core):
    /// meanwhile the pump may pull three more batches before it has to wait for room, which
    /// costs a wake-up of the loop. With half-buffer batches it waited up to 20 times as often
    /// (S6 on 3.14: 92–1,768 waits per million items, against 10–132).
    batch: usize,
    pub(super) home: Arc<Home>,
    backend: Backend,
    buffer: Mutex<Buffer>,
    /// Items the pump pulled and has not flushed yet: touched only on the loop's thread.
    pending: Py<PyList>,
    /// Empty until the loop's thread learns that the consumer is gone
    /// ([`consumer_left`](Self::consumer_left)): the pump tests it before each step, a list
    /// because testing one costs no call into the extension.
    gone: Py<PyList>,
    /// Notified when items arrive or the iterator ends.
    pub(super) items: Event,
    /// Notified when the consumer made room or went away.
    pub(super) space: Event,
}

#[derive(Default)]
pub(super) struct Buffer {
    pub(super) items: VecDeque<Outcome>,
    /// The pump holds a grant: it is in a step of the iterator, or between two.
    pub(super) pulling: bool,
    /// The iterator is exhausted or failed: no more items will come.
    pub(super) ended: bool,
    /// The consumer is gone.
    pub(super) closed: bool,
    /// A flush job is queued on the loop's home.
    flush_queued: bool,
    /// Cancels the pump's step: the trio scope's or the asyncio task's `cancel`.
    cancel: Option<Py<PyAny>>,
}

impl Channel {
    pub(super) fn new(py: Python<'_>, capacity: usize, home: Arc<Home>, backend: Backend) -> Self {
        let capacity = capacity.max(1);
        Channel {
            capacity,
            batch: capacity.div_ceil(4),
            home,
            backend,
            buffer: Mutex::new(Buffer::default()),
            pending: PyList::empty(py).unbind(),
            gone: PyList::empty(py).unbind(),
            items: Event::new(),
            space: Event::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the pump may do next, its pending list being empty: pull `Some(n)` items (at
    /// most a batch) before it flushes, wait for room (`Some(0)`), or stop, the consumer being
    /// gone (`None`).
    fn grant_in(&self, buffer: &mut Buffer) -> Option<usize> {
        if buffer.closed {
            buffer.pulling = false;
            return None;
        }
        let room = self
            .capacity
            .saturating_sub(buffer.items.len())
            .min(self.batch);
        buffer.pulling = room > 0;
        Some(room)
    }

    /// Waits until the buffer has room, then grants it (`Some(n)`, `n > 0`), or the consumer
    /// is gone (`None`).
    async fn wait_for_space(&self) -> Option<usize> {
        loop {
            let listener = {
                match self.grant_in(&mut self.lock()) {
                    Some(0) => {}
                    grant => return grant,
                }
                // Registered before looking again: the consumer notifies after taking items.
                self.space.listen()
            };
            match self.grant_in(&mut self.lock()) {
                Some(0) => {}
                grant => return grant,
            }
            listener.await;
        }
    }

    /// Under the lock, on the loop's thread: moves the pending items into the buffer, or leaves
    /// them to be dropped if the consumer is gone. True when the consumer has items to be told
    /// of. The caller empties the list after releasing the lock ([`empty_pending`]).
    ///
    /// [`empty_pending`]: Self::empty_pending
    fn take_pending(&self, pending: &Bound<'_, PyList>, buffer: &mut Buffer) -> bool {
        if buffer.closed || buffer.ended || pending.is_empty() {
            return false;
        }
        buffer
            .items
            .extend(pending.iter().map(|item| Ok(item.unbind())));
        true
    }

    /// Empties the pending list, outside the lock: items the consumer will never see are
    /// released here, and their finalisers may run anything.
    fn empty_pending(pending: &Bound<'_, PyList>) {
        let count = pending.len();
        if count > 0 {
            if let Err(err) = pending.del_slice(0, count) {
                err.write_unraisable(pending.py(), Some(pending.as_any()));
            }
        }
    }

    /// Moves the pending items into the buffer, notifies the consumer, then grants the pump its
    /// next batch ([`grant_in`](Self::grant_in)), under the same lock.
    fn flush(&self, py: Python<'_>) -> Option<usize> {
        let pending = self.pending.bind(py);
        let (notify, grant) = {
            let mut buffer = self.lock();
            let notify = self.take_pending(pending, &mut buffer);
            (notify, self.grant_in(&mut buffer))
        };
        Self::empty_pending(pending);
        if notify {
            self.items.notify(1);
        }
        grant
    }

    /// Queues a flush of the pending items, without a grant, for when the pump lets the loop
    /// run (one job at a time). False, and nothing queued, when the consumer is gone.
    fn flush_soon(self: &Arc<Self>) -> bool {
        {
            let mut buffer = self.lock();
            if buffer.closed {
                return false;
            }
            if std::mem::replace(&mut buffer.flush_queued, true) {
                return true;
            }
        }
        let channel = Arc::clone(self);
        self.home.run(Box::new(move |py| {
            let pending = channel.pending.bind(py);
            let notify = {
                let mut buffer = channel.lock();
                buffer.flush_queued = false;
                channel.take_pending(pending, &mut buffer)
            };
            Self::empty_pending(pending);
            if notify {
                channel.items.notify(1);
            }
            Ok(())
        }));
        true
    }

    /// The pump stopped pulling for a consumer that is gone: a cancellation queued by the
    /// consumer's drop must not reach what the pump does next (`aclose()`).
    fn stop(&self, py: Python<'_>) {
        self.lock().pulling = false;
        Self::empty_pending(self.pending.bind(py));
    }

    /// On the loop's thread: no more items, after the pending ones and then `last`, if any.
    fn end(&self, py: Python<'_>, last: Option<Outcome>) {
        let pending = self.pending.bind(py);
        let cancel = {
            let mut buffer = self.lock();
            if buffer.ended {
                drop(buffer);
                Self::empty_pending(pending);
                return;
            }
            self.take_pending(pending, &mut buffer);
            buffer.items.extend(last);
            buffer.pulling = false;
            buffer.ended = true;
            buffer.cancel.take()
        };
        Self::empty_pending(pending);
        drop(cancel);
        self.items.notify(1);
    }

    /// On the loop's thread, once the consumer is gone: no step starts any more, and the one
    /// under way, if any, is cancelled.
    pub(super) fn consumer_left(&self, py: Python<'_>) -> PyResult<()> {
        self.gone.bind(py).append(true)?;
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
    fn loop_died(&self, py: Python<'_>) {
        self.end(
            py,
            Some(Err(PyRuntimeError::new_err(
                "the async iterator's event loop stopped before it was exhausted",
            ))),
        );
    }
}

/// The channel as the pump (`helpers.pump_async_iter`) sees it; it lives as long as the
/// pump's Python task (counted in [`stats`](crate::stats())).
#[pyclass(frozen)]
pub(super) struct Pump {
    channel: Arc<Channel>,
}

impl Pump {
    pub(super) fn new(channel: Arc<Channel>) -> Self {
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

    /// The list the pump appends its items to; [`flush`](Self::flush) empties it.
    #[getter]
    fn pending(&self, py: Python<'_>) -> Py<PyList> {
        self.channel.pending.clone_ref(py)
    }

    /// A list, empty while the consumer is there as far as the loop's thread knows.
    #[getter]
    fn gone(&self, py: Python<'_>) -> Py<PyList> {
        self.channel.gone.clone_ref(py)
    }

    /// The first grant: how many items to pull before flushing (0: wait for `space`), or
    /// `None` when the consumer is gone.
    fn reserve(&self) -> Option<usize> {
        self.channel.grant_in(&mut self.channel.lock())
    }

    /// Waits for room, then grants it (as `reserve`, never 0).
    fn space(&self) -> Coroutine {
        let channel = Arc::clone(&self.channel);
        let backend = self.channel.backend;
        Coroutine::new(async move { PyResult::Ok(channel.wait_for_space().await) })
            .without_unawaited_warning()
            .with_backend(backend)
    }

    /// Hands the pending items over; then the next grant, as `reserve`.
    fn flush(&self, py: Python<'_>) -> Option<usize> {
        self.channel.flush(py)
    }

    /// Hands the pending items over when the pump next lets the loop run: called for the
    /// first item of a batch, whose iterator may suspend before the batch is full. `False`
    /// when the consumer is gone: as every item after a suspension comes first in its batch,
    /// no step that follows one starts for a consumer that is gone.
    fn flush_soon(&self) -> bool {
        self.channel.flush_soon()
    }

    /// The pump stopped for a consumer that is gone, before `aclose()`.
    fn stop(&self, py: Python<'_>) {
        self.channel.stop(py);
    }

    /// The iterator ended: exhausted (`None`) or with an exception.
    fn finish(&self, py: Python<'_>, exception: Option<&Bound<'_, PyAny>>) {
        let last = exception.map(|exception| Err(PyErr::from_value(exception.clone())));
        self.channel.end(py, last);
    }

    fn closed(&self) -> bool {
        self.channel.lock().closed
    }

    /// Reports a failed `aclose()` where no loop has an exception handler (trio).
    fn report_unraisable(&self, exception: &Bound<'_, PyAny>, iterator: &Bound<'_, PyAny>) {
        PyErr::from_value(exception.clone()).write_unraisable(exception.py(), Some(iterator));
    }
}

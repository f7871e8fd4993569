//! The channel of a [`PyAsyncIter`](crate::PyAsyncIter): a bounded buffer between its pump
//! (a task of the loop, `helpers.pump_async_iter`) and its consumer (any thread), and the
//! pump's Python face.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use event_listener::Event;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::backend::Backend;
use crate::census;
use crate::home::{Dependent, Home};
use crate::rust_to_py::Coroutine;
use crate::task::Outcome;

/// The buffer between the pump (on the loop thread) and the consumer (anywhere).
pub(super) struct Channel {
    capacity: usize,
    pub(super) home: Arc<Home>,
    backend: Backend,
    buffer: Mutex<Buffer>,
    /// Notified when items arrive or the iterator ends.
    pub(super) items: Event,
    /// Notified when the consumer made room or went away.
    pub(super) space: Event,
}

#[derive(Default)]
pub(super) struct Buffer {
    pub(super) items: VecDeque<Outcome>,
    /// The pump is in a step of the iterator.
    pub(super) pulling: bool,
    /// The iterator is exhausted or failed: no more items will come.
    pub(super) ended: bool,
    /// The consumer is gone.
    pub(super) closed: bool,
    /// Items were pushed since the consumer was last notified; their announcement is queued.
    unannounced: bool,
    /// Cancels the pump's step: the trio scope's or the asyncio task's `cancel`.
    cancel: Option<Py<PyAny>>,
}

impl Channel {
    pub(super) fn new(capacity: usize, home: Arc<Home>, backend: Backend) -> Self {
        Channel {
            capacity: capacity.max(1),
            home,
            backend,
            buffer: Mutex::new(Buffer::default()),
            items: Event::new(),
            space: Event::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Buffer> {
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
    /// iterator produces without suspending are announced together: when the buffer is half
    /// full, or, through the loop's home, as soon as the pump lets the loop run (the iterator
    /// suspended). Half, not full: the consumer wakes while the pump fills the other half,
    /// and takes the batch before the pump has to wait for room; at full the two threads
    /// took turns, each waking the other (S6 on 3.14: 411–515 ns an item, now 279–337). The
    /// consumer takes the whole buffer and the pump pushes one item at a time, so every batch
    /// passes the half mark, full ones included; a consumer that keeps up is woken once per
    /// half buffer and the pump never waits. One that is awake when told misses nothing: it
    /// sleeps only after finding the buffer empty with its listener registered.
    fn push(self: &Arc<Self>, item: Outcome) -> Option<bool> {
        let (announce, room) = {
            let mut buffer = self.lock();
            buffer.pulling = false;
            buffer.items.push_back(item);
            let announce = if buffer.items.len() == self.capacity.div_ceil(2) {
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
    pub(super) fn cancel_pull(&self, py: Python<'_>) -> PyResult<()> {
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

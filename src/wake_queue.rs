//! Wake-ups from other threads without the interpreter.
//!
//! A waker must never wait for the interpreter: wakers run inside other libraries' critical
//! sections (`event-listener`, on which async-channel, async-lock and smol are built, wakes
//! while holding its list lock), and the loop thread may be holding the interpreter while it
//! waits for that very lock — a deadlock. It must not touch the interpreter while it shuts down
//! either (CPython kills a thread that does).
//!
//! So a wake-up from another thread is pushed into the queue of its loop, and the first one
//! after the queue was drained writes a byte to a socket pair: one system call, no interpreter,
//! and a whole batch of wake-ups costs the loop one pass. The loop thread watches the socket
//! (asyncio `add_reader`, a trio system task in `wait_readable`) and delivers the batch.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use pyo3::intern;
use pyo3::prelude::*;

use crate::backend::{Backend, Wakeup};
use crate::py_to_rust::spawn::helper;
use crate::rust_to_py::coroutine::{self, SharedDriver};

pub(crate) struct WakeQueue {
    pending: Mutex<Pending>,
    signal: UnixStream,
    watched: UnixStream,
    /// The coroutines that suspended on this loop, to finish if the loop dies under them.
    coroutines: Mutex<Coroutines>,
}

#[derive(Default)]
struct Pending {
    jobs: Vec<Job>,
    route: Route,
}

/// Where a pushed job goes.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Into the queue, for the loop to drain.
    #[default]
    Queue,
    /// Nothing drains the queue any more, but the loop still runs (a trio run cancels its
    /// system tasks, this queue's drain among them, before its last tasks finish): straight to
    /// the loop's thread-safe entry point.
    Forward,
    /// The loop died: dropped.
    Dead,
}

/// Work for the loop thread.
pub(crate) enum Job {
    /// Resume a suspended task.
    Wake(Wakeup),
    /// Run Rust code that needs the interpreter, there (`EventLoop::spawn_with`).
    Call(Box<dyn FnOnce(Python<'_>) + Send>),
}

#[derive(Default)]
struct Coroutines {
    registered: Vec<Weak<SharedDriver>>,
    /// Finished coroutines are swept out when the list reaches this length.
    sweep_at: usize,
}

impl WakeQueue {
    /// A new queue for `event_loop` (an asyncio loop or a trio token), which runs on this
    /// thread, registered with the loop. `None` where the loop cannot watch a socket (no
    /// `add_reader`): wake-ups then take the loop's thread-safe entry point. One per loop:
    /// [`Home::here`](crate::backend::Home::here) keeps it.
    pub(crate) fn for_loop(
        py: Python<'_>,
        backend: Backend,
        event_loop: &Bound<'_, PyAny>,
    ) -> Option<Arc<WakeQueue>> {
        let queue = Arc::new(WakeQueue::new().ok()?);
        queue.watch(py, backend, event_loop).ok()?;
        Some(queue)
    }

    fn new() -> std::io::Result<Self> {
        let (signal, watched) = UnixStream::pair()?;
        signal.set_nonblocking(true)?;
        watched.set_nonblocking(true)?;
        Ok(WakeQueue {
            pending: Mutex::default(),
            signal,
            watched,
            coroutines: Mutex::default(),
        })
    }

    fn watch(
        self: &Arc<Self>,
        py: Python<'_>,
        backend: Backend,
        event_loop: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let fd = self.watched.as_raw_fd();
        let drain = Py::new(
            py,
            Drain {
                queue: Arc::clone(self),
            },
        )?;
        match backend {
            Backend::Asyncio => {
                event_loop.call_method1(intern!(py, "add_reader"), (fd, drain))?;
            }
            Backend::Trio => {
                let spawn = py
                    .import("trio.lowlevel")?
                    .getattr(intern!(py, "spawn_system_task"))?;
                spawn.call1((helper(py, "drain_trio_wakeups")?, fd, drain))?;
            }
        }
        Ok(())
    }

    /// Remembers a coroutine bound to this loop.
    pub(crate) fn register(&self, coroutine: Weak<SharedDriver>) {
        let mut coroutines = self
            .coroutines
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if coroutines.registered.len() >= coroutines.sweep_at {
            coroutines
                .registered
                .retain(|coroutine| coroutine.strong_count() > 0);
            coroutines.sweep_at = (2 * coroutines.registered.len()).max(64);
        }
        coroutines.registered.push(coroutine);
    }

    /// The loop is gone: its tasks will never run again, so the coroutines still suspended on
    /// it drop their futures now (an asyncio task left pending by `loop.close()` would
    /// otherwise keep them forever: the cycle through Rust is invisible to Python's GC).
    fn abandon_all(&self, py: Python<'_>) {
        // Jobs that can no longer run are dropped: a `spawn_with` future learns it at once.
        let orphans = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.route = Route::Dead;
            std::mem::take(&mut pending.jobs)
        };
        drop(orphans);
        let registered = std::mem::take(
            &mut self
                .coroutines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .registered,
        );
        for coroutine in registered.iter().filter_map(Weak::upgrade) {
            coroutine::abandon(&coroutine, py);
        }
    }

    /// Any thread, without the interpreter: queues `job` for the loop thread (forwards it, or
    /// drops it, after the lock is released, when nothing drains the queue any more).
    pub(crate) fn push(&self, job: Job) {
        let (route, job) = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            match pending.route {
                Route::Queue => {
                    pending.jobs.push(job);
                    if pending.jobs.len() > 1 {
                        return;
                    }
                    (Route::Queue, None)
                }
                route => (route, Some(job)),
            }
        };
        match (route, job) {
            // A full socket buffer already holds a signal; a closed loop reads none: either
            // way there is nothing more to do.
            (Route::Queue, _) => drop((&self.signal).write(&[1])),
            (Route::Forward, Some(job)) => job.forward(),
            _ => {}
        }
    }

    /// On the loop thread, when the queue's drain stops for good while the loop still runs:
    /// later jobs are forwarded, queued ones delivered now.
    fn stop_draining(&self, py: Python<'_>) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.route == Route::Queue {
                pending.route = Route::Forward;
            }
        }
        self.drain(py);
    }

    /// On the loop thread: delivers every queued wake-up.
    fn drain(&self, py: Python<'_>) {
        // Signals first, then the queue: a wake-up pushed after the queue was taken writes a
        // new signal, so none is left behind.
        let mut sink = [0u8; 256];
        loop {
            match (&self.watched).read(&mut sink) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let batch = std::mem::take(
            &mut self
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .jobs,
        );
        for job in batch {
            match job {
                Job::Wake(wakeup) => wakeup.deliver_on_loop_thread(py),
                Job::Call(call) => {
                    // A panic must not unwind into the loop's callback machinery.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(py)));
                }
            }
        }
    }
}

impl Job {
    /// Runs the job through the loop's thread-safe entry point, from any thread.
    fn forward(self) {
        match self {
            Job::Wake(wakeup) => wakeup.deliver_threadsafe(),
            Job::Call(call) => {
                crate::exit_guard::attach_unless_exiting(|py| {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(py)));
                });
            }
        }
    }
}

/// The loop's callback for the queue's socket.
#[pyclass(frozen)]
struct Drain {
    queue: Arc<WakeQueue>,
}

#[pymethods]
impl Drain {
    fn __call__(&self, py: Python<'_>) {
        self.queue.drain(py);
    }

    /// The drain stops for good, the loop still runs (trio: the run is ending).
    fn close(&self, py: Python<'_>) {
        self.queue.stop_draining(py);
    }
}

impl Drop for Drain {
    /// The loop let go of its callback: it closed (asyncio) or the run ended (trio).
    fn drop(&mut self) {
        // A queue whose drain stopped while its loop still ran forwards its jobs: the loop's
        // tasks still get their wake-ups, so nothing is abandoned.
        let forwarding = self
            .queue
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .route
            == Route::Forward;
        if !forwarding {
            Python::try_attach(|py| self.queue.abandon_all(py));
        }
    }
}

/// Whether this thread is attached to the interpreter right now (without attaching it).
pub(crate) fn thread_is_attached() -> bool {
    // SAFETY: `PyGILState_Check` only reads the calling thread's state and has no
    // preconditions; a waker exists only once Python has polled a coroutine, so the runtime
    // was initialised (and after finalisation it answers without touching freed state).
    unsafe { pyo3::ffi::PyGILState_Check() == 1 }
}

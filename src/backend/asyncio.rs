//! asyncio (and uvloop): a task suspends on a future of its loop and resumes when the future
//! gets a result.

use std::sync::Arc;

use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyWeakrefMethods, PyWeakrefReference};

use super::wakeup_future::WakeupFuture;
use crate::glue;
use crate::home::{self, Home};
use crate::task::{Canceller, Completion, Launch, TaskSlot};
use crate::visit::Visit;

/// The home of an asyncio loop; a new one watches its signal with `add_reader`, from the
/// loop's thread (through `call_soon_threadsafe` when called elsewhere).
pub(crate) fn home(event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<Home>> {
    let py = event_loop.py();
    let (home, created) = home::find_or_create(event_loop, |predecessor| {
        // One record per loop: a new home carries on its predecessor's (a successor, or the
        // home made for a loop whose home died between two runs while still held), so that
        // what the loop refused before it refuses after.
        let record = match predecessor.and_then(Home::record) {
            Some(record) => record.bind(py).clone(),
            None => glue::asyncio_shutdown(py)?.call1((event_loop,))?,
        };
        Ok(home::Parts {
            threadsafe: event_loop.getattr(intern!(py, "call_soon_threadsafe"))?,
            record: Some(record),
            succession: Some(&SUCCESSION),
        })
    })?;
    if created {
        // A loop that refuses (closed) drops the watcher, and the home dies with it.
        let drain = home.drain_callable(py, home::drain::DrainRole::Watcher)?;
        let watch = glue::watch_asyncio(py)?;
        let fd = home.watched_fd();
        let shutdown = shutdown_of(py, &home);
        let _ = if running_here(py, &home) {
            watch.call1((event_loop, fd, drain, shutdown))
        } else {
            // Maybe a Rust thread, with no Python frame (see `glue::call_in_a_frame`).
            event_loop
                .getattr(intern!(py, "call_soon_threadsafe"))
                .and_then(|threadsafe| {
                    glue::call_in_a_frame(py)?
                        .call1((threadsafe, watch, event_loop, fd, drain, shutdown))
                })
        };
    }
    Ok(home)
}

/// How an asyncio loop is carried on past a home it let go of while it runs (see
/// `Home::lost`).
static SUCCESSION: home::Succession = home::Succession {
    succeed: successor,
    keep,
};

/// A new home for a loop that let go of its old one while it runs on (the program removed
/// the reader, or cancelled the keeper: see `Home::lost`), on whichever thread noticed.
/// None where the loop is not running: it closed, is being collected, or is open between two
/// runs (whose parked tasks `Parker::resume_after_loss` resumes). It keeps the old home's
/// `AsyncioShutdown` record (see [`home`]): a loop that already shuts down goes on refusing
/// new tasks, and `watch()` starts no second sentinel for a record that has one.
fn successor(event_loop: &Bound<'_, PyAny>) -> PyResult<Option<Arc<Home>>> {
    let py = event_loop.py();
    if !event_loop
        .call_method0(intern!(py, "is_running"))?
        .is_truthy()?
    {
        return Ok(None);
    }
    // The old home is retired: the registry makes a new one, which watches the loop.
    let home = home(event_loop)?;
    Ok((!home.is_dead()).then_some(home))
}

/// Has the loop keep `keeper`, a timer due in decades (see `Home::forward_instead`).
fn keep(event_loop: &Bound<'_, PyAny>, keeper: Py<PyAny>) -> PyResult<()> {
    let py = event_loop.py();
    glue::keep_asyncio(py)?
        .call1((event_loop, keeper))
        .map(drop)
}

/// The home's `AsyncioShutdown` record (see `helpers.py`).
fn shutdown_of<'py>(py: Python<'py>, home: &Home) -> Bound<'py, PyAny> {
    home.record().map_or_else(
        || py.None().into_bound(py),
        |record| record.bind(py).clone(),
    )
}

/// Whether this thread runs `home`'s loop right now.
pub(crate) fn running_here(py: Python<'_>, home: &Home) -> bool {
    glue::running_loop(py)
        .and_then(|running| running.call0())
        .is_ok_and(|running| running.is(home.event_loop()))
}

/// Starts the launch's awaitable as a task of its loop (see [`Launch`]): the task reports to
/// the completion, and the slot gets its canceller. A loop that shuts down refuses it (the
/// completion says so).
pub(crate) fn start(launch: &Launch<'_>) -> PyResult<()> {
    let py = launch.awaitable.py();
    let shutdown = shutdown_of(py, &launch.home);
    if let Ok(tasks) = shutdown.getattr(intern!(py, "tasks")) {
        launch.completion.get().track_in(tasks.cast_into()?);
    }
    let args = (
        shutdown,
        launch.home.event_loop().bind(py),
        &launch.awaitable,
        &launch.context,
        &launch.completion,
    );
    let task = glue::start_asyncio_task(py)?.call1(args)?;
    if !task.is_none() {
        launch.slot.attach(canceller(&launch.home, &task)?);
    }
    Ok(())
}

/// Attaches `completion` to an asyncio future (of any loop) on its loop's thread, and gives
/// `slot` its canceller.
pub(crate) fn attach_future(
    future: &Bound<'_, PyAny>,
    completion: &Bound<'_, Completion>,
    slot: &Arc<TaskSlot>,
) -> PyResult<()> {
    let py = future.py();
    let home = home(&future.call_method0(intern!(py, "get_loop"))?)?;
    completion.get().depend_on(py, &home);
    let (future, completion, slot) = (
        future.clone().unbind(),
        completion.clone().unbind(),
        Arc::clone(slot),
    );
    let home_of_job = Arc::clone(&home);
    let attach = move |py: Python<'_>| {
        let future = future.bind(py);
        future.call_method1(intern!(py, "add_done_callback"), (completion,))?;
        slot.attach(canceller(&home_of_job, future)?);
        Ok(())
    };
    // asyncio futures are not thread-safe: on the loop's thread.
    home.run_now_or_soon(py, running_here(py, &home), Box::new(attach))
}

/// Cancels a task or future on its loop's thread. Held weakly: a task that its loop dropped
/// (the loop closed) must stay collectable.
fn canceller(home: &Arc<Home>, future: &Bound<'_, PyAny>) -> PyResult<Canceller> {
    let home = Arc::clone(home);
    let future = PyWeakrefReference::new(future)?.unbind();
    Ok(Canceller::OnLoop(
        home,
        Box::new(move |py| {
            if let Some(future) = future.bind(py).upgrade() {
                future.call_method0(intern!(py, "cancel"))?;
            }
            Ok(())
        }),
    ))
}

pub(crate) struct Parker {
    /// The task's loop.
    home: Arc<Home>,
    /// The future the task waits for, while it is suspended on one.
    waiting_on: Option<Py<WakeupFuture>>,
}

impl Parker {
    /// The task's loop is `running`, or found now.
    pub(crate) fn new(py: Python<'_>, running: Option<Bound<'_, PyAny>>) -> PyResult<Self> {
        let running = match running {
            Some(running) => running,
            None => glue::get_running_loop(py)?.call0()?,
        };
        Ok(Parker {
            home: home(&running)?,
            waiting_on: None,
        })
    }

    pub(crate) fn home(&self) -> &Arc<Home> {
        &self.home
    }

    /// A task resumes us only once the future it waits for is done; anything else is a second
    /// driver (the coroutine given to two tasks), which would otherwise leave the first task
    /// waiting forever.
    pub(crate) fn check_resumption(&mut self, py: Python<'_>) -> PyResult<()> {
        match self.waiting_on.take() {
            Some(future) if !future.get().is_done(py)? => {
                self.waiting_on = Some(future);
                Err(PyRuntimeError::new_err(
                    "coroutine resumed while it waits for its wake-up: is it driven by two tasks?",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Forgets the suspension (an exception was thrown in instead of a wake-up).
    pub(crate) fn abandon(&mut self) {
        self.waiting_on = None;
    }

    /// The home died while its loop runs on this thread, or is open and idle (between two
    /// runs): resolves the future the task waits for, if any, so that the task runs again
    /// (see [`super::Parker::resume_after_loss`]). False where the loop closed, or runs on
    /// another thread (where resolving it is not ours to do).
    pub(crate) fn resume_after_loss(&self, py: Python<'_>) -> PyResult<bool> {
        let event_loop = self.home.event_loop().bind(py);
        let asks = |method| {
            event_loop
                .call_method0(method)
                .and_then(|answer| answer.is_truthy())
        };
        let open_here = running_here(py, &self.home)
            || matches!(
                (
                    asks(intern!(py, "is_closed")),
                    asks(intern!(py, "is_running"))
                ),
                (Ok(false), Ok(false))
            );
        if !open_here {
            return Ok(false);
        }
        if let Some(future) = &self.waiting_on {
            WakeupFuture::resolve(future.bind(py))?;
        }
        Ok(true)
    }

    /// The home died under a loop that runs on: the parker moves to the loop's current home,
    /// a new one. False where the loop closed, or its new home died at once (a loop that
    /// refuses it).
    pub(crate) fn rehome(&mut self, py: Python<'_>) -> PyResult<bool> {
        let event_loop = self.home.event_loop().bind(py).clone();
        if event_loop
            .call_method0(intern!(py, "is_closed"))?
            .is_truthy()?
        {
            return Ok(false);
        }
        let home = home(&event_loop)?;
        if home.is_dead() {
            return Ok(false);
        }
        self.home = home;
        Ok(true)
    }

    /// The future the task waits for, while it is suspended on one.
    pub(crate) fn awaiting(&self) -> Option<&Py<PyAny>> {
        self.waiting_on.as_ref().map(Py::as_any)
    }

    /// The future the task waits for: the task holds it too, and it holds the task (its
    /// done-callback), so a forgotten task is a cycle through this parker.
    pub(crate) fn traverse<V: Visit>(&self, visit: &V) -> Result<(), V::Error> {
        match &self.waiting_on {
            Some(future) => visit.visit(future),
            None => Ok(()),
        }
    }

    /// Yields a fresh [`WakeupFuture`] of the loop: the task checks its
    /// `_asyncio_future_blocking` flag, adds its wake-up as a done-callback and resumes us
    /// once the wake-up resolves it.
    ///
    /// `register` hands the wake-up to the waker state, false when woken meanwhile.
    pub(crate) fn park<'py>(
        &mut self,
        py: Python<'py>,
        woken: bool,
        register: impl FnOnce(Wakeup) -> bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        // Woken while it was polled: a bare `yield` makes the Task resume us on the loop's next
        // pass, as `asyncio.sleep(0)` does.
        if woken {
            return Ok(py.None().into_bound(py));
        }
        let future = WakeupFuture::new(py, Arc::clone(&self.home))?;
        let wakeup = Wakeup {
            future: future.clone_ref(py),
        };
        if register(wakeup) {
            let yielded = future.clone_ref(py).into_bound(py).into_any();
            self.waiting_on = Some(future);
            Ok(yielded)
        } else {
            // Woken just now: as above.
            Ok(py.None().into_bound(py))
        }
    }
}

/// Resolves the [`WakeupFuture`] a parked task waits on.
pub(crate) struct Wakeup {
    future: Py<WakeupFuture>,
}

impl Wakeup {
    pub(crate) fn home(&self) -> &Arc<Home> {
        self.future.get().home()
    }

    pub(crate) fn traverse<V: Visit>(&self, visit: &V) -> Result<(), V::Error> {
        visit.visit(&self.future)
    }

    /// Resolves the future the task waits for. An interrupt raised inside the loop's
    /// `call_soon` propagates (see `wakeup_future::schedule`).
    pub(crate) fn deliver_here(self, py: Python<'_>) -> PyResult<()> {
        match WakeupFuture::resolve(self.future.bind(py)) {
            Ok(()) => Ok(()),
            // The loop closed: nobody waits for this wake-up any more.
            Err(err) if err.is_instance_of::<PyException>(py) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

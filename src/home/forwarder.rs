//! The forwarder: one thread that gets jobs onto loops whose signal nobody watches.
//!
//! A thread that pushes a job must never wait for the interpreter (it may hold another
//! library's lock that the loop thread wants). Where the loop does not watch the home's
//! signal, someone must attach and call the loop's thread-safe entry point: this thread does,
//! on behalf of everyone, holding none of their locks.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use pyo3::prelude::*;

use crate::exit_guard::attach_unless_exiting;
use crate::fork::PerProcess;

/// Something the forwarder gets onto its loop (a home).
pub(crate) trait Forward: Send + Sync {
    /// On the forwarder's thread, attached: ask the loop to run what is queued.
    fn forward(self: Arc<Self>, py: Python<'_>);
}

struct Forwarder {
    pending: Mutex<Vec<Arc<dyn Forward>>>,
    ready: Condvar,
}

/// Asks the forwarder to get `target` onto its loop. Any thread; never waits for the
/// interpreter (only for the forwarder's list, held for a push or a swap).
pub(crate) fn kick(target: Arc<dyn Forward>) {
    let forwarder = forwarder();
    forwarder
        .pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(target);
    forwarder.ready.notify_one();
}

/// This process's forwarder: a forked child starts one of its own, since the parent's thread
/// was not forked (see `crate::fork`).
fn forwarder() -> &'static Forwarder {
    static FORWARDER: PerProcess<Forwarder> = PerProcess::new();
    if let Some(forwarder) = FORWARDER.get() {
        return forwarder;
    }
    let made = Forwarder {
        pending: Mutex::new(Vec::new()),
        ready: Condvar::new(),
    };
    match FORWARDER.set(made) {
        Ok(forwarder) => {
            // Without the thread, jobs for unwatched loops would wait for ever: there is no
            // way on without it, and a process that cannot start a thread is failing anyway.
            std::thread::Builder::new()
                .name("pyo3-async-forwarder".into())
                .spawn(move || run(forwarder))
                .expect("cannot start the pyo3-async forwarder thread");
            forwarder
        }
        // Another thread's forwarder won the race (and starts the thread).
        Err(_) => match FORWARDER.get() {
            Some(forwarder) => forwarder,
            None => unreachable!("a forwarder was set"),
        },
    }
}

fn run(forwarder: &'static Forwarder) {
    loop {
        let targets = {
            let mut pending = forwarder
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            while pending.is_empty() {
                pending = forwarder
                    .ready
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            std::mem::take(&mut *pending)
        };
        // At exit the door is shut: the loops go away with the interpreter, and the targets
        // are released unattached (PyO3 defers their objects' decrefs).
        attach_unless_exiting(|py| {
            for target in targets {
                target.forward(py);
            }
        });
    }
}

//! The forwarder: one thread that gets jobs onto loops whose signal nobody watches.
//!
//! A thread that pushes a job must never wait for the interpreter (it may hold another
//! library's lock that the loop thread wants). Where the loop does not watch the home's
//! signal, someone must attach and call the loop's thread-safe entry point: this thread does,
//! on behalf of everyone, holding none of their locks.

use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

use super::Home;
use crate::exit_guard::attach_unless_exiting;

struct Forwarder {
    homes: Mutex<Vec<Arc<Home>>>,
    ready: Condvar,
}

/// Asks the forwarder to get `home`'s queue drained. Any thread; never waits for the
/// interpreter (only for the forwarder's list, held for a push or a swap).
pub(crate) fn kick(home: Arc<Home>) {
    let forwarder = forwarder();
    forwarder
        .homes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(home);
    forwarder.ready.notify_one();
}

fn forwarder() -> &'static Forwarder {
    static FORWARDER: OnceLock<&'static Forwarder> = OnceLock::new();
    FORWARDER.get_or_init(|| {
        let forwarder: &'static Forwarder = Box::leak(Box::new(Forwarder {
            homes: Mutex::new(Vec::new()),
            ready: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("pyo3-async-forwarder".into())
            .spawn(move || forward(forwarder))
            .expect("cannot start the pyo3-async forwarder thread");
        forwarder
    })
}

fn forward(forwarder: &'static Forwarder) {
    loop {
        let homes = {
            let mut homes = forwarder
                .homes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            while homes.is_empty() {
                homes = forwarder
                    .ready
                    .wait(homes)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            std::mem::take(&mut *homes)
        };
        // At exit the door is shut: the loops go away with the interpreter, and the homes are
        // released unattached (PyO3 defers their objects' decrefs).
        attach_unless_exiting(|py| {
            for home in homes {
                home.forward(py);
            }
        });
    }
}

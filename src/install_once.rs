//! [`InstallOnce`]: raw type slots filled in once per process.

use std::sync::atomic::{AtomicBool, Ordering};

/// Raw slots filled in on a class PyO3 made, once per process: the first instance that needs
/// them installs them, every later one pays a relaxed load. Installers run attached under a
/// GIL (the slots are not filled in on free-threaded builds), which orders them.
pub(crate) struct InstallOnce(AtomicBool);

impl InstallOnce {
    pub(crate) const fn new() -> Self {
        InstallOnce(AtomicBool::new(false))
    }

    /// Runs `install` unless it ran already.
    pub(crate) fn run(&self, install: impl FnOnce()) {
        if !self.0.load(Ordering::Relaxed) {
            install();
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

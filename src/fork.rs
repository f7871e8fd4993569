//! `os.fork()`: what a child process inherits, and must not use.
//!
//! A forked child is a copy of one thread of its parent. Everything the other threads were
//! doing is gone, yet their memory is copied: a tokio runtime whose workers do not exist, the
//! forwarder's list that no thread drains, a lock held by a thread that will never release
//! it, a counter of threads "in flight" that will never come back. Using any of it in the
//! child hangs (tokio timers never fire, a job for an unwatched loop is never forwarded, exit
//! waits for ghosts).
//!
//! So each such per-process thing is a [`PerProcess`]: created on first use, and created anew
//! on first use in each child. The old one is leaked in the child, never dropped, since
//! dropping it would wait for its threads or take its locks. The C library tells us about
//! forks: [`watch`] registers [`in_child`] with `pthread_atfork`, which runs in the child of
//! every `fork()` (Python's `os.fork()`, multiprocessing's `fork` start method, gunicorn and
//! pytest-xdist workers, C code), first thing, while the child is single-threaded: before any
//! `os.register_at_fork` hook, so a hook of the user's that uses the bridge already sees the
//! child's state.
//!
//! | the stored value's generation | `PerProcess::get` | `PerProcess::set(value)` |
//! |---|---|---|
//! | none stored | `None` | stores `value` for this generation |
//! | this process's | the value | refused: `value` comes back |
//! | older (the parent's, in a child) | `None` | stores `value` for this generation; the parent's is leaked |
//!
//! Invariant: a value is only ever handed out in the generation that created it.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// How many forks led to this process (0 in the original process).
static GENERATION: AtomicUsize = AtomicUsize::new(0);

/// This process's fork generation.
pub(crate) fn generation() -> usize {
    GENERATION.load(Ordering::Acquire)
}

/// Registers [`in_child`] with `pthread_atfork`, once per process (a child inherits the
/// registration). Called wherever the crate first keeps per-process state: a loop's home, the
/// tokio runtime, a `PerProcess` value, `block_on`.
pub(crate) fn watch() {
    #[cfg(unix)]
    {
        static WATCHED: std::sync::Once = std::sync::Once::new();
        WATCHED.call_once(|| {
            // SAFETY: `in_child` is a plain `extern "C" fn()` with no preconditions, and does
            // only what is allowed in a forked child before it execs or runs on: atomic stores.
            // Registration cannot fail but for lack of memory, where there is nothing to do.
            let _ = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        });
    }
}

/// Runs in the child of every `fork()`, first thing, single-threaded: from now on every
/// [`PerProcess`] value of the parent is out of date, and the counters the parent's threads
/// kept are reset. Atomics only: this is async-signal context.
#[cfg(unix)]
extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
    crate::exit_guard::reset_in_child();
}

/// A value of which each process has its own: see the module's docs.
pub(crate) struct PerProcess<T: 'static> {
    current: AtomicPtr<Entry<T>>,
}

struct Entry<T> {
    generation: usize,
    value: T,
}

impl<T: Send + Sync + 'static> PerProcess<T> {
    pub(crate) const fn new() -> Self {
        PerProcess {
            current: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// This process's value, if it has one yet.
    pub(crate) fn get(&self) -> Option<&'static T> {
        self.get_in(generation())
    }

    /// Makes `value` this process's value, unless it has one: then `value` comes back.
    pub(crate) fn set(&self, value: T) -> Result<&'static T, T> {
        self.set_in(generation(), value)
    }

    fn get_in(&self, generation: usize) -> Option<&'static T> {
        let entry = self.current.load(Ordering::Acquire);
        // SAFETY: entries are leaked boxes, never freed: a non-null pointer stays valid for
        // the rest of the process.
        let entry = unsafe { entry.as_ref() }?;
        (entry.generation == generation).then_some(&entry.value)
    }

    fn set_in(&self, generation: usize, value: T) -> Result<&'static T, T> {
        watch();
        let fresh = Box::into_raw(Box::new(Entry { generation, value }));
        let mut seen = self.current.load(Ordering::Acquire);
        loop {
            // SAFETY: as in `get_in`, entries are never freed.
            if let Some(entry) = unsafe { seen.as_ref() } {
                if entry.generation == generation {
                    // SAFETY: `fresh` was never shared: it is still ours to take back.
                    let fresh = unsafe { Box::from_raw(fresh) };
                    return Err(fresh.value);
                }
            }
            // An older generation's entry is left where it was: leaked, never dropped.
            match self
                .current
                .compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                // SAFETY: `fresh` is now shared and, like every entry, never freed.
                Ok(_) => return Ok(unsafe { &(*fresh).value }),
                Err(now) => seen = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PerProcess;

    #[test]
    fn a_child_gets_a_value_of_its_own_and_the_parents_is_kept() {
        static VALUE: PerProcess<String> = PerProcess::new();
        assert_eq!(VALUE.get_in(0), None);
        let parent = VALUE.set_in(0, "parent".to_owned()).unwrap();
        assert_eq!(VALUE.get_in(0), Some(parent));
        assert_eq!(
            VALUE.set_in(0, "refused".to_owned()),
            Err("refused".to_owned())
        );
        // A child (one fork later) sees none, and sets its own; the parent's is kept.
        assert_eq!(VALUE.get_in(1), None);
        assert_eq!(VALUE.set_in(1, "child".to_owned()).unwrap(), "child");
        assert_eq!(
            VALUE.set_in(1, "refused".to_owned()),
            Err("refused".to_owned())
        );
        assert_eq!(VALUE.get_in(1).map(String::as_str), Some("child"));
        assert_eq!(parent, "parent");
    }
}

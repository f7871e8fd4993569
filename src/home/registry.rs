//! Finding the home of a loop: one per loop, for as long as anything uses it.
//!
//! Entries are keyed by the loop object's address and hold their home weakly; a home holds
//! its loop, so an entry whose home is alive names a live loop, and an address can only be
//! reused once the home is gone. Each thread keeps the home it used last in front of the
//! registry: a thread usually runs one loop at a time, so the lookup is a pointer comparison.
//! An entry that no longer serves its loop (a home that died while its loop ran on) is
//! passed over: the loop gets a new one, and the old one lives on only for what holds it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::LocalKey;

use pyo3::prelude::*;

/// What the registry knows of an entry: the loop it belongs to.
pub(crate) trait Keyed {
    fn key(&self) -> &Py<PyAny>;
    /// Whether the entry no longer serves its loop, though something still holds it: the
    /// registry then makes a new one for the loop, as if there were none.
    fn retired(&self) -> bool;
}

/// A registry of `T`s by loop, with a per-thread cache of the last one used.
pub(crate) struct Registry<T: 'static> {
    entries: Mutex<Option<HashMap<usize, Weak<T>>>>,
    last: &'static LocalKey<RefCell<Weak<T>>>,
}

impl<T: Keyed> Registry<T> {
    pub(crate) const fn new(last: &'static LocalKey<RefCell<Weak<T>>>) -> Self {
        Registry {
            entries: Mutex::new(None),
            last,
        }
    }

    /// The entry of `event_loop`, or a new one from `create`, which is given the entry it
    /// replaces if that one is still alive (retired: a home that its loop let go of, or that
    /// died, while something still holds it), to carry on what it knew of the loop. Returns
    /// whether it is new (the caller then sets it going, outside the registry's lock).
    ///
    /// `create` runs outside the lock: Python calls may detach from the interpreter (PyO3's
    /// once-cells do, while they initialise), and a thread that waits for the interpreter
    /// while holding the lock deadlocks against an attached thread waiting for the lock. Two
    /// threads may then create an entry for one loop; the first to insert it wins and the
    /// other's entry is dropped unused.
    pub(crate) fn find_or_create(
        &self,
        event_loop: &Bound<'_, PyAny>,
        create: impl FnOnce(Option<Arc<T>>) -> PyResult<T>,
    ) -> PyResult<(Arc<T>, bool)> {
        let cached = self.last.with(|last| {
            last.borrow()
                .upgrade()
                .filter(|entry| entry.key().is(event_loop) && !entry.retired())
        });
        if let Some(entry) = cached {
            return Ok((entry, false));
        }
        let key = event_loop.as_ptr() as usize;
        let serving = |entries: &HashMap<usize, Weak<T>>| {
            entries
                .get(&key)
                .and_then(Weak::upgrade)
                .filter(|entry| !entry.retired())
        };
        let (found, predecessor) = self.with_entries(|entries| {
            let alive = entries.get(&key).and_then(Weak::upgrade);
            match alive {
                Some(entry) if !entry.retired() => (Some(entry), None),
                retired => (None, retired),
            }
        });
        let (entry, created) = match found {
            Some(entry) => (entry, false),
            None => {
                let new = Arc::new(create(predecessor)?);
                let winner = self.with_entries(|entries| match serving(entries) {
                    Some(entry) => Err(entry),
                    None => {
                        if entries.len() >= 64 && entries.len().is_power_of_two() {
                            entries.retain(|_, entry| entry.strong_count() > 0);
                        }
                        entries.insert(key, Arc::downgrade(&new));
                        Ok(())
                    }
                });
                match winner {
                    Ok(()) => (new, true),
                    Err(entry) => (entry, false),
                }
            }
        };
        self.last
            .with(|last| *last.borrow_mut() = Arc::downgrade(&entry));
        Ok((entry, created))
    }

    /// The entries alive now.
    pub(crate) fn live(&self) -> Vec<Arc<T>> {
        self.with_entries(|entries| entries.values().filter_map(Weak::upgrade).collect())
    }

    /// Runs `f` on the entries, under the lock: `f` must not wait for the interpreter.
    fn with_entries<R>(&self, f: impl FnOnce(&mut HashMap<usize, Weak<T>>) -> R) -> R {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        f(entries.get_or_insert_with(HashMap::new))
    }
}

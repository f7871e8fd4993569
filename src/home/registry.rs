//! Finding the home of a loop: one per loop, for as long as anything uses it.
//!
//! Entries are keyed by the loop object's address and hold their home weakly; a home holds
//! its loop, so an entry whose home is alive names a live loop, and an address can only be
//! reused once the home is gone. Each thread keeps the home it used last in front of the
//! registry: a thread usually runs one loop at a time, so the lookup is a pointer comparison.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::LocalKey;

use pyo3::prelude::*;

/// What the registry knows of an entry: the loop it belongs to.
pub(crate) trait Keyed {
    fn key(&self) -> &Py<PyAny>;
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

    /// The entry of `event_loop`, or a new one from `create`. Returns whether it is new (the
    /// caller then sets it going, outside the registry's lock).
    pub(crate) fn find_or_create(
        &self,
        event_loop: &Bound<'_, PyAny>,
        create: impl FnOnce() -> PyResult<T>,
    ) -> PyResult<(Arc<T>, bool)> {
        let cached = self.last.with(|last| {
            last.borrow()
                .upgrade()
                .filter(|entry| entry.key().is(event_loop))
        });
        if let Some(entry) = cached {
            return Ok((entry, false));
        }
        let key = event_loop.as_ptr() as usize;
        let (entry, created) = {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            let entries = entries.get_or_insert_with(HashMap::new);
            match entries.get(&key).and_then(Weak::upgrade) {
                Some(entry) => (entry, false),
                None => {
                    let entry = Arc::new(create()?);
                    if entries.len() >= 64 && entries.len().is_power_of_two() {
                        entries.retain(|_, entry| entry.strong_count() > 0);
                    }
                    entries.insert(key, Arc::downgrade(&entry));
                    (entry, true)
                }
            }
        };
        self.last
            .with(|last| *last.borrow_mut() = Arc::downgrade(&entry));
        Ok((entry, created))
    }
}

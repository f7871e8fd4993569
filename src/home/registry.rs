//! Finding the home of a loop: one per loop, for as long as anything uses it.
//!
//! Entries are keyed by the loop object's address and hold their home weakly; a home holds
//! its loop, so an entry whose home is alive names a live loop, and an address can only be
//! reused once the home is gone. A thread keeps the home it used last in front of the
//! registry: a thread usually runs one loop at a time, so the lookup is a pointer comparison.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use pyo3::prelude::*;

/// What the registry knows of an entry: the loop it belongs to.
pub(crate) trait Keyed {
    fn key(&self) -> &Py<PyAny>;
}

static HOMES: Mutex<Option<HashMap<usize, Weak<super::Home>>>> = Mutex::new(None);

thread_local! {
    static LAST: RefCell<Weak<super::Home>> = const { RefCell::new(Weak::new()) };
}

/// The home of `event_loop`, or a new one from `create`, which `start` then sets going
/// (outside the registry's lock: it calls into Python). Returns whether it is new.
pub(crate) fn find_or_create(
    event_loop: &Bound<'_, PyAny>,
    create: impl FnOnce() -> PyResult<super::Home>,
) -> PyResult<(Arc<super::Home>, bool)> {
    let cached = LAST.with(|last| {
        last.borrow()
            .upgrade()
            .filter(|home| home.key().is(event_loop))
    });
    if let Some(home) = cached {
        return Ok((home, false));
    }
    let key = event_loop.as_ptr() as usize;
    let (home, created) = {
        let mut homes = HOMES.lock().unwrap_or_else(PoisonError::into_inner);
        let homes = homes.get_or_insert_with(HashMap::new);
        match homes.get(&key).and_then(Weak::upgrade) {
            Some(home) => (home, false),
            None => {
                let home = Arc::new(create()?);
                if homes.len() >= 64 && homes.len().is_power_of_two() {
                    homes.retain(|_, home| home.strong_count() > 0);
                }
                homes.insert(key, Arc::downgrade(&home));
                (home, true)
            }
        }
    };
    LAST.with(|last| *last.borrow_mut() = Arc::downgrade(&home));
    Ok((home, created))
}

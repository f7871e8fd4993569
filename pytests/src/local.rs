//! Coroutines over `!Send` futures (test_local.py): `#[pyo3_async::pyfunction(local)]` and
//! `Coroutine::local`.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::prelude::*;
use pyo3::types::PyModule;
use pyo3_async::Coroutine;

use crate::coroutines::suspend_once;

/// Destructors of `RcGuard`s run so far.
static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// `!Send` state (an `Rc`) whose destructor is counted.
struct RcGuard(Rc<Cell<u32>>);

impl Drop for RcGuard {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

/// Counts to `n` in an `Rc<Cell<u32>>` kept across suspensions: the future is not `Send`.
#[pyo3_async::pyfunction(local)]
async fn local_count(n: u32) -> u32 {
    let counter = RcGuard(Rc::new(Cell::new(0)));
    for _ in 0..n {
        suspend_once().await;
        counter.0.set(counter.0.get() + 1);
    }
    counter.0.get()
}

/// The same, by hand.
#[pyfunction]
fn local_count_by_hand(n: u32) -> Coroutine {
    let counter = RcGuard(Rc::new(Cell::new(0)));
    Coroutine::local(async move {
        for _ in 0..n {
            suspend_once().await;
            counter.0.set(counter.0.get() + 1);
        }
        PyResult::Ok(counter.0.get())
    })
}

/// How many `RcGuard`s were dropped (their destructors ran).
#[pyfunction]
fn local_dropped() -> usize {
    DROPPED.load(Ordering::SeqCst)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(local_count, m)?)?;
    m.add_function(wrap_pyfunction!(local_count_by_hand, m)?)?;
    m.add_function(wrap_pyfunction!(local_dropped, m)?)?;
    Ok(())
}

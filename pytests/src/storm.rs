//! `Storm`: many futures woken at once from many threads (test_stress.py).

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3_async::Coroutine;

use crate::coroutine;

/// Many futures woken at once from many threads, with spurious, repeated and late wakes.
#[pyclass(frozen)]
struct Storm {
    slots: Arc<Vec<StormSlot>>,
}

#[derive(Default)]
struct StormSlot {
    waker: Mutex<Option<Waker>>,
    fired: AtomicBool,
    polls: AtomicUsize,
    completions: AtomicUsize,
}

#[pymethods]
impl Storm {
    #[new]
    fn new(n: usize) -> Self {
        Storm {
            slots: Arc::new((0..n).map(|_| StormSlot::default()).collect()),
        }
    }

    /// Pending until slot `i` fires; returns `i`.
    #[pyo3(signature = (i, backend = None))]
    fn wait(&self, i: usize, backend: Option<&str>) -> PyResult<Coroutine> {
        if i >= self.slots.len() {
            return Err(PyValueError::new_err("no such slot"));
        }
        let slots = Arc::clone(&self.slots);
        coroutine(
            Coroutine::new(async move {
                poll_fn(|cx| {
                    let slot = &slots[i];
                    slot.polls.fetch_add(1, Ordering::SeqCst);
                    *slot.waker.lock().expect("slot lock") = Some(cx.waker().clone());
                    if slot.fired.load(Ordering::SeqCst) {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await;
                slots[i].completions.fetch_add(1, Ordering::SeqCst);
                PyResult::Ok(i)
            }),
            backend,
        )
    }

    /// From `threads` threads at once (detached, not joined): `spurious` rounds of wakes of
    /// every slot without firing it, then each thread fires every slot (starting at its own
    /// offset) and wakes it `repeats` times, then wakes everything once more after the fact.
    fn fire_from_threads(&self, threads: usize, spurious: usize, repeats: usize) {
        for t in 0..threads {
            let slots = Arc::clone(&self.slots);
            std::thread::spawn(move || {
                let wake_all = |slots: &[StormSlot]| {
                    for slot in slots {
                        let waker = slot.waker.lock().expect("slot lock").clone();
                        if let Some(waker) = waker {
                            waker.wake();
                        }
                    }
                };
                for _ in 0..spurious {
                    wake_all(&slots);
                }
                let n = slots.len();
                for k in 0..n {
                    let slot = &slots[(k + t * n / threads.max(1)) % n];
                    slot.fired.store(true, Ordering::SeqCst);
                    let waker = slot.waker.lock().expect("slot lock").clone();
                    if let Some(waker) = waker {
                        for _ in 0..repeats {
                            waker.wake_by_ref();
                        }
                    }
                }
                wake_all(&slots);
            });
        }
    }

    /// How many times each slot completed.
    fn completions(&self) -> Vec<usize> {
        self.slots
            .iter()
            .map(|slot| slot.completions.load(Ordering::SeqCst))
            .collect()
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Storm>()?;
    Ok(())
}

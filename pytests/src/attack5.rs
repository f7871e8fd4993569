//! Round-5 attack helpers (test_attack_round5.py): boxed labels built by hand, and a waker
//! kept by a foreign thread that wakes it in a loop and drops it there, without the GIL.

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::thread::JoinHandle;

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3_async::__private::StaticLabel;
use pyo3_async::{AsyncGenerator, Coroutine};

use crate::coroutines::suspend_once;

static LABEL: StaticLabel = StaticLabel {
    qualname: "Static.label",
    file: "pytests/src/attack5.rs",
    line: 17,
};

/// A coroutine labelled by `steps`, in order: ("static", _) the macros' static label,
/// ("qualname", name) `with_qualname`, ("source", line) `with_source` (this file). It suspends
/// once, then raises `KeyError(payload)` when `fail`, else returns `payload`.
#[pyfunction]
#[pyo3(signature = (steps, payload, fail = false))]
fn relabelled(steps: Vec<(String, String)>, payload: Py<PyAny>, fail: bool) -> PyResult<Coroutine> {
    let mut coroutine = Coroutine::new(async move {
        suspend_once().await;
        if fail {
            Err(PyKeyError::new_err(payload))
        } else {
            Ok(payload)
        }
    });
    for (kind, value) in steps {
        coroutine = match kind.as_str() {
            "static" => coroutine.__with_label(&LABEL),
            "qualname" => coroutine.with_qualname(value),
            "source" => coroutine.with_source(
                "pytests/src/attack5.rs",
                value.parse().map_err(|_| PyKeyError::new_err("line"))?,
            ),
            _ => return Err(PyKeyError::new_err(kind)),
        };
    }
    Ok(coroutine)
}

/// An async generator of `0..n` renamed by hand.
#[pyfunction]
fn relabelled_generator(n: usize, qualname: String) -> AsyncGenerator {
    AsyncGenerator::new(futures::stream::iter((0..n).map(PyResult::Ok))).with_qualname(qualname)
}

/// Keeps the waker of the coroutine it makes in a foreign thread.
#[pyclass(frozen)]
#[derive(Default)]
struct ForeignWaker {
    waker: Arc<Mutex<Option<Waker>>>,
    stop: Arc<AtomicBool>,
    wakes: Arc<AtomicUsize>,
    thread: Mutex<Option<JoinHandle<usize>>>,
}

#[pymethods]
impl ForeignWaker {
    #[new]
    fn new() -> Self {
        ForeignWaker::default()
    }

    /// Pending for ever, its waker (re)stored at each poll; `payload` lives in the future.
    fn wait(&self, payload: Py<PyAny>) -> Coroutine {
        let waker = Arc::clone(&self.waker);
        Coroutine::new(async move {
            let _payload = payload;
            poll_fn(|cx| {
                *waker.lock().expect("lock") = Some(cx.waker().clone());
                Poll::<()>::Pending
            })
            .await;
            PyResult::Ok(())
        })
    }

    /// Starts a thread that takes the waker and wakes it in a loop until `stop`, then drops it
    /// there (without the GIL). Returns once the thread holds the waker.
    fn start(&self, py: Python<'_>) {
        let waker = self.waker.lock().expect("lock").take();
        let Some(waker) = waker else { return };
        let stop = Arc::clone(&self.stop);
        let wakes = Arc::clone(&self.wakes);
        let thread = std::thread::spawn(move || {
            let mut count = 0;
            while !stop.load(Ordering::SeqCst) {
                waker.wake_by_ref();
                count += 1;
                wakes.fetch_add(1, Ordering::SeqCst);
            }
            // The waker itself, woken by value: dropped here, without the interpreter.
            waker.wake();
            count
        });
        *self.thread.lock().expect("lock") = Some(thread);
        // The loop has begun (a few wakes) before control returns.
        py.detach(|| {
            while self.wakes.load(Ordering::SeqCst) < 10 {
                std::thread::yield_now();
            }
        });
    }

    /// Stops the thread (which drops the waker) and returns how many wakes it made.
    fn stop(&self, py: Python<'_>) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.lock().expect("lock").take();
        py.detach(|| thread.map_or(0, |thread| thread.join().expect("waker thread")))
    }

    /// Takes the kept waker and drops it on a new thread (without the GIL); whether there was one.
    fn drop_on_thread(&self, py: Python<'_>) -> bool {
        let waker = self.waker.lock().expect("lock").take();
        let had = waker.is_some();
        py.detach(|| {
            std::thread::spawn(move || drop(waker))
                .join()
                .expect("drop thread")
        });
        had
    }

    #[getter]
    fn has_waker(&self) -> bool {
        self.waker.lock().expect("lock").is_some()
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(relabelled, m)?)?;
    m.add_function(wrap_pyfunction!(relabelled_generator, m)?)?;
    m.add_class::<ForeignWaker>()?;
    register_scripted(m)
}

// ---- Scripted wakers (round 5, CPython 3.14 attack): what a future does with the waker its
// poll lends it ------------------------------------------------------------------------------

/// One action on the lent waker `waker` of the current poll.
// A clone woken by value is a path of its own (an owned waker made, woken, dropped): the point
// of the actions that take it, not a clone to spare.
#[allow(clippy::waker_clone_wake)]
fn act(action: &str, waker: &Waker, kept: &Mutex<Vec<Waker>>, late: &Mutex<Vec<JoinHandle<()>>>) {
    match action {
        "wake" => waker.wake_by_ref(),
        "clone_wake" => waker.clone().wake(),
        "clone_wake_ref" => {
            let clone = waker.clone();
            clone.wake_by_ref();
        }
        "clone_drop" => drop(waker.clone()),
        "clone_clone_drop" => drop(waker.clone().clone()),
        "keep" => kept.lock().expect("lock").push(waker.clone()),
        "wake_kept" => {
            for old in kept.lock().expect("lock").iter() {
                old.wake_by_ref();
            }
        }
        "wake_kept_by_value" => {
            let old: Vec<Waker> = kept.lock().expect("lock").drain(..).collect();
            for old in old {
                old.wake();
            }
        }
        "thread_wake" => std::thread::scope(|scope| {
            scope.spawn(|| waker.wake_by_ref());
        }),
        "thread_clone_wake" => std::thread::scope(|scope| {
            scope.spawn(|| waker.clone().wake());
        }),
        "thread_clone_drop" => std::thread::scope(|scope| {
            scope.spawn(|| drop(waker.clone()));
        }),
        "threads_storm" => std::thread::scope(|scope| {
            for i in 0..4 {
                scope.spawn(move || {
                    for _ in 0..200 {
                        if i % 2 == 0 {
                            waker.wake_by_ref();
                        } else {
                            waker.clone().wake();
                        }
                    }
                });
            }
        }),
        // A thread that wakes a clone at some moment, racing the end of the poll and the park.
        "late_thread_wake" => {
            let clone = waker.clone();
            late.lock()
                .expect("lock")
                .push(std::thread::spawn(move || clone.wake()));
        }
        "late_thread_spin" => {
            let clone = waker.clone();
            late.lock().expect("lock").push(std::thread::spawn(move || {
                for _ in 0..1000 {
                    clone.wake_by_ref();
                }
                clone.wake();
            }));
        }
        "will_wake_kept" => {
            // A waker kept from an earlier poll never claims to wake this poll's waker.
            for old in kept.lock().expect("lock").iter() {
                assert!(!old.will_wake(waker), "a kept waker will_wake the lent one");
            }
            assert!(waker.will_wake(waker));
            let clone = waker.clone();
            assert!(clone.will_wake(&clone));
        }
        other => panic!("unknown action {other}"),
    }
}

/// A future scripted poll by poll: what it does with its waker, and how the poll ends.
#[pyclass(frozen)]
#[derive(Default)]
struct Scripted {
    kept: Arc<Mutex<Vec<Waker>>>,
    late: Arc<Mutex<Vec<JoinHandle<()>>>>,
    polls: Arc<AtomicUsize>,
}

#[pymethods]
impl Scripted {
    #[new]
    fn new() -> Self {
        Scripted::default()
    }

    /// Poll `i` runs the actions of `script[i]` then ends as its outcome says: "pending",
    /// "ready" (returns the number of polls), "panic" or "error" (ValueError). Past the end
    /// of the script: ready. `payload` lives in the future.
    #[pyo3(signature = (script, payload = None, backend = None))]
    fn run(
        &self,
        script: Vec<(Vec<String>, String)>,
        payload: Option<Py<PyAny>>,
        backend: Option<&str>,
    ) -> PyResult<Coroutine> {
        let kept = Arc::clone(&self.kept);
        let late = Arc::clone(&self.late);
        let polls = Arc::clone(&self.polls);
        let mut step = 0;
        crate::coroutine(
            Coroutine::new(async move {
                let _payload = payload;
                poll_fn(move |cx| {
                    polls.fetch_add(1, Ordering::SeqCst);
                    step += 1;
                    let Some((actions, outcome)) = script.get(step - 1) else {
                        return Poll::Ready(Ok(step));
                    };
                    for action in actions {
                        act(action, cx.waker(), &kept, &late);
                    }
                    match outcome.as_str() {
                        "pending" => Poll::Pending,
                        "ready" => Poll::Ready(Ok(step)),
                        "panic" => panic!("scripted panic"),
                        _ => Poll::Ready(Err(pyo3::exceptions::PyValueError::new_err(step))),
                    }
                })
                .await
            }),
            backend,
        )
    }

    /// Polls `awaitable` (a Python awaitable, through `PyFuture`) after running `actions` on
    /// the first poll's waker; returns the awaitable's result.
    fn around_py(&self, awaitable: &Bound<'_, PyAny>, actions: Vec<String>) -> PyResult<Coroutine> {
        let mut future = Box::pin(pyo3_async::PyFuture::new(awaitable)?);
        let kept = Arc::clone(&self.kept);
        let late = Arc::clone(&self.late);
        let polls = Arc::clone(&self.polls);
        let mut first = true;
        Ok(Coroutine::new(async move {
            poll_fn(move |cx| {
                polls.fetch_add(1, Ordering::SeqCst);
                if std::mem::take(&mut first) {
                    for action in &actions {
                        act(action, cx.waker(), &kept, &late);
                    }
                }
                future.as_mut().poll(cx)
            })
            .await
        }))
    }

    /// Wakes every kept waker by reference; how many.
    fn wake_kept(&self) -> usize {
        let kept = self.kept.lock().expect("lock");
        for waker in kept.iter() {
            waker.wake_by_ref();
        }
        kept.len()
    }

    /// Drops the kept wakers on another thread, without the GIL; how many.
    fn drop_kept(&self, py: Python<'_>) -> usize {
        let kept: Vec<Waker> = self.kept.lock().expect("lock").drain(..).collect();
        let count = kept.len();
        py.detach(|| {
            std::thread::spawn(move || drop(kept))
                .join()
                .expect("drop thread")
        });
        count
    }

    /// Joins the late threads (their wakes are done).
    fn join(&self, py: Python<'_>) -> usize {
        let late: Vec<JoinHandle<()>> = self.late.lock().expect("lock").drain(..).collect();
        let count = late.len();
        py.detach(|| {
            for thread in late {
                thread.join().expect("late thread");
            }
        });
        count
    }

    #[getter]
    fn polls(&self) -> usize {
        self.polls.load(Ordering::SeqCst)
    }

    #[getter]
    fn kept_count(&self) -> usize {
        self.kept.lock().expect("lock").len()
    }
}

pub(crate) fn register_scripted(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Scripted>()
}

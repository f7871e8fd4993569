//! Thread states kept by foreign threads (`keep_thread_state`, `release_thread_state`, and the
//! tokio runtime's threads that use them).
//!
//! A thread state is observed through a `threading.local`: what one attach stores in it is
//! still there in the next attach only if both ran with the same thread state, and it is gone
//! once that state was deleted.

use pyo3::prelude::*;
use pyo3_async::{keep_thread_state, release_thread_state};

/// A `threading.local`, made on the main thread.
fn thread_local_object() -> Py<PyAny> {
    pyo3_async::__private::initialize_python();
    Python::attach(|py| -> PyResult<Py<PyAny>> {
        Ok(py.import("threading")?.call_method0("local")?.unbind())
    })
    .unwrap()
}

/// Marks `local` in one attach; whether the mark is there in the next.
fn mark_survives(local: &Py<PyAny>) -> bool {
    Python::attach(|py| local.bind(py).setattr("mark", true)).unwrap();
    seen(local)
}

fn seen(local: &Py<PyAny>) -> bool {
    Python::attach(|py| local.bind(py).hasattr("mark")).unwrap()
}

fn on_a_new_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(f).join().unwrap()
}

#[test]
fn without_a_kept_state_each_attach_has_a_new_one() {
    let local = thread_local_object();
    assert!(!on_a_new_thread(move || mark_survives(&local)));
}

#[test]
fn a_kept_state_serves_every_attach_until_released() {
    let local = thread_local_object();
    let (kept, released) = on_a_new_thread(move || {
        keep_thread_state();
        keep_thread_state(); // idempotent
        let kept = mark_survives(&local);
        release_thread_state();
        let released = seen(&local);
        release_thread_state(); // nothing left to release
        (kept, released)
    });
    assert!(kept, "the mark is lost between attaches: no state was kept");
    assert!(
        !released,
        "the mark outlived the release: the state was not deleted"
    );
}

#[test]
fn a_thread_inside_an_attach_keeps_nothing() {
    let local = thread_local_object();
    let survived = on_a_new_thread(move || {
        // The thread has PyO3's temporary state now: keeping must not adopt or add one.
        Python::attach(|py| {
            local.bind(py).setattr("mark", true).unwrap();
            keep_thread_state();
        });
        let survived = seen(&local);
        release_thread_state();
        survived
    });
    assert!(!survived);
}

#[test]
fn a_release_while_attached_takes_effect_when_the_attach_ends() {
    let local = thread_local_object();
    let (inside, after) = on_a_new_thread(move || {
        keep_thread_state();
        let inside = Python::attach(|py| {
            local.bind(py).setattr("mark", true).unwrap();
            release_thread_state(); // in use: given up, deleted when this attach ends
            local.bind(py).hasattr("mark").unwrap()
        });
        (inside, seen(&local))
    });
    assert!(inside, "the state in use was deleted under the attach");
    assert!(!after, "the state given up outlived the attach");
}

#[test]
fn a_release_inside_detach_never_frees_the_state_detach_restores() {
    // Was a segfault: the release deleted the state `detach` had saved, and restored after.
    let local = thread_local_object();
    let (restored, after) = on_a_new_thread(move || {
        keep_thread_state();
        let restored = Python::attach(|py| {
            local.bind(py).setattr("mark", true).unwrap();
            py.detach(release_thread_state);
            local.bind(py).hasattr("mark").unwrap()
        });
        (restored, seen(&local))
    });
    assert!(restored);
    assert!(!after);
}

/// One step of a program run on a thread of its own.
#[derive(Clone, Debug)]
enum Step {
    Keep,
    Release,
    /// `Python::attach` around the inner steps.
    Attach(Vec<Step>),
    /// `py.detach` around the inner steps (inside an attach only).
    Detach(Vec<Step>),
}

/// Every program of at most `budget` steps; `attached` allows `Detach`.
fn programs(budget: usize, attached: bool) -> Vec<Vec<Step>> {
    let mut all = vec![Vec::new()];
    if budget == 0 {
        return all;
    }
    for first_size in 1..=budget {
        let mut firsts = Vec::new();
        if first_size == 1 {
            firsts.push(Step::Keep);
            firsts.push(Step::Release);
        }
        // Attached, the composite step detaches (and attaches again inside); detached, it
        // attaches (and may detach inside).
        for inner in programs(first_size - 1, !attached) {
            if inner.iter().map(size).sum::<usize>() + 1 != first_size {
                continue;
            }
            firsts.push(if attached {
                Step::Detach(inner)
            } else {
                Step::Attach(inner)
            });
        }
        for first in firsts {
            for rest in programs(budget - first_size, attached) {
                let mut program = vec![first.clone()];
                program.extend(rest);
                all.push(program);
            }
        }
    }
    all
}

fn size(step: &Step) -> usize {
    match step {
        Step::Keep | Step::Release => 1,
        Step::Attach(inner) | Step::Detach(inner) => 1 + inner.iter().map(size).sum::<usize>(),
    }
}

/// Runs `steps`; `state_exists` says whether the thread has a thread state where they run (a
/// kept one, or PyO3's temporary one inside an attach). Returns whether the thread still holds
/// a kept state, by the module's state table.
fn run(steps: &[Step], py: Option<Python<'_>>, mut held: bool, state_exists: bool) -> bool {
    for step in steps {
        match step {
            Step::Keep => {
                keep_thread_state();
                held |= !state_exists && !held;
            }
            Step::Release => {
                release_thread_state();
                held = false;
            }
            Step::Attach(inner) => {
                held = Python::attach(|py| run(inner, Some(py), held, true));
            }
            Step::Detach(inner) => {
                let py = py.expect("detach inside an attach");
                // The thread's state (kept or temporary) stays bound while detached.
                held = py.detach(|| run(inner, None, held, true));
            }
        }
    }
    held
}

#[test]
fn every_order_of_keep_attach_detach_and_release_is_safe_and_as_the_table_says() {
    let local = std::sync::Arc::new(thread_local_object());
    let all = programs(5, false);
    assert!(all.len() > 300, "{} programs", all.len());
    for program in all {
        let local = std::sync::Arc::clone(&local);
        let described = format!("{program:?}");
        let (held, kept) = on_a_new_thread(move || {
            let held = run(&program, None, false, false);
            let kept = mark_survives(&local);
            release_thread_state();
            (held, kept)
        });
        assert_eq!(held, kept, "{described}");
    }
}

#[test]
fn the_tokio_runtime_threads_keep_no_state() {
    // What a task stores in its thread state must not reach the next task on that worker: the
    // default runtime keeps none, so each attach has a fresh one.
    let local = std::sync::Arc::new(thread_local_object());
    let handle = pyo3_async::tokio::handle();
    let on_worker = {
        let local = std::sync::Arc::clone(&local);
        handle.spawn(async move { mark_survives(&local) })
    };
    let on_blocking_thread = {
        let local = std::sync::Arc::clone(&local);
        handle.spawn_blocking(move || mark_survives(&local))
    };
    handle.block_on(async {
        assert!(!on_worker.await.unwrap(), "a worker kept its state");
        assert!(
            !on_blocking_thread.await.unwrap(),
            "a blocking thread kept its state"
        );
    });
}

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
    Python::initialize();
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
fn releasing_while_attached_waits_for_the_next_release() {
    let local = thread_local_object();
    let (still_kept, released) = on_a_new_thread(move || {
        keep_thread_state();
        Python::attach(|py| {
            local.bind(py).setattr("mark", true).unwrap();
            release_thread_state(); // attached with the kept state: must not delete it
        });
        let still_kept = seen(&local);
        release_thread_state();
        (still_kept, seen(&local))
    });
    assert!(still_kept);
    assert!(!released);
}

#[test]
fn the_tokio_runtime_threads_keep_their_states() {
    let local = std::sync::Arc::new(thread_local_object());
    let handle = pyo3_async::tokio::handle();
    let on_worker = {
        let local = std::sync::Arc::clone(&local);
        // Both attaches in one poll, so on one worker.
        handle.spawn(async move { mark_survives(&local) })
    };
    let on_blocking_thread = {
        let local = std::sync::Arc::clone(&local);
        handle.spawn_blocking(move || mark_survives(&local))
    };
    handle.block_on(async {
        assert!(
            on_worker.await.unwrap(),
            "a worker made a new state per attach"
        );
        assert!(
            on_blocking_thread.await.unwrap(),
            "a blocking thread made a new state per attach"
        );
    });
}

//! uvloop on a thread that has the id of `threading.main_thread()`, a thread that has ended.
//!
//! Before 3.13, `threading.main_thread()` is the thread that first imported `threading`, which
//! need not be the one that initialised Python (CPython's main thread). When it has ended and
//! the OS gives its id to a new thread, uvloop takes the new thread for the main thread and
//! CPython refuses its signal set-up: `pyo3_async::run` refuses such a thread with an error
//! that says so, before a loop exists, instead of failing half-way with the loop left open.
//! From 3.13 the two main threads are the same one, and the run succeeds.
//!
//! A test without the harness: this file's `main` decides which thread does what (under
//! libtest, Python may already be initialised, and `threading` imported, by another test).

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3_async::LoopKind;

fn main() {
    // CPython's main thread: the process's, which lives to the end.
    Python::initialize();
    let importing_first = Python::attach(|py| -> PyResult<bool> {
        Ok(!py
            .import("sys")?
            .getattr("modules")?
            .contains("threading")?)
    })
    .expect("sys.modules");
    assert!(
        importing_first,
        "initialising Python imported `threading`: this test cannot make another thread its first \
         importer"
    );
    // `threading`, first imported on a thread that then ends.
    let ended_id = std::thread::spawn(|| {
        Python::attach(|py| -> PyResult<u64> {
            py.import("threading")?.call_method0("get_ident")?.extract()
        })
    })
    .join()
    .expect("the importing thread")
    .expect("threading.get_ident()");
    let before_3_13 = Python::attach(|py| py.version_info() < (3, 13));

    // A later thread with the same id: glibc reuses a joined thread's stack, and with it its id.
    let outcome = (0..1_000).find_map(|_| {
        std::thread::spawn(move || {
            Python::attach(|py| {
                let id: u64 = py
                    .import("threading")
                    .and_then(|threading| threading.call_method0("get_ident"))
                    .and_then(|id| id.extract())
                    .expect("threading.get_ident()");
                (id == ended_id)
                    .then(|| pyo3_async::run(py, LoopKind::Uvloop, async { PyResult::Ok(7) }))
            })
        })
        .join()
        .expect("the reusing thread")
    });
    let outcome = outcome.expect("no new thread got the ended thread's id back");
    if before_3_13 {
        let err =
            outcome.expect_err("uvloop ran on a thread CPython does not take for the main one");
        Python::attach(|py| {
            assert!(err.is_instance_of::<PyRuntimeError>(py), "{err}");
            assert!(
                err.to_string()
                    .contains("has the id of `threading.main_thread()`"),
                "{err}"
            );
            assert!(
                err.value(py)
                    .getattr("__context__")
                    .expect("__context__")
                    .is_none(),
                "{err}"
            );
        });
    } else {
        assert_eq!(outcome.expect("it ran"), 7);
    }
    // Any other thread runs uvloop as before: one spawned while a thread holds the ended id.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || released.recv());
    let elsewhere = std::thread::spawn(move || {
        Python::attach(|py| -> PyResult<_> {
            let id: u64 = py
                .import("threading")?
                .call_method0("get_ident")?
                .extract()?;
            assert_ne!(
                id, ended_id,
                "the holder did not take the ended thread's id"
            );
            pyo3_async::run(py, LoopKind::Uvloop, async { PyResult::Ok(8) })
        })
    })
    .join()
    .expect("another thread");
    release.send(()).expect("the holder waits");
    holder.join().expect("the holder").expect("released");
    assert_eq!(elsewhere.expect("it ran"), 8);
}

//! uvloop and the two main threads of an embedded interpreter.
//!
//! Before 3.13, CPython's main thread (the one that initialised Python, the only one allowed
//! to set up signal handling) and `threading.main_thread()` (the one that first imported
//! `threading`, which is how uvloop decides) need not be the same thread, and the OS reuses
//! the ids of threads that ended. Where uvloop takes a thread for the main one and CPython
//! does not, `uvloop.run` fails half-way ("Cannot close a running event loop", its loop left
//! open): `pyo3_async::run` refuses such a thread first, with an error that says why
//! (`glue/loops.py`). From 3.13 the two are the same thread, and every scenario runs.
//!
//! Each scenario needs a process of its own (which thread initialises Python, and which first
//! imports `threading`, is decided once per process): `main` runs this binary again with
//! `--scenario NAME` for each one, and reports every scenario whose outcome is wrong.
//!
//! What is right, for `pyo3_async::run(py, LoopKind::Uvloop, ..)`: the run succeeds, or it is
//! refused before any loop exists, on a thread CPython does not take for its main one. What is
//! wrong: uvloop failing half-way, or a refusal where uvloop would have run. Scenarios that
//! need a thread to get an ended thread's id back rely on glibc reusing a joined thread's
//! stack, and with it its id; one that never gets it fails.

use std::process::Command;

use pyo3::prelude::*;
use pyo3_async::LoopKind;

const REFUSAL: &str = "uvloop cannot run a loop on this thread";

type Scenario = fn() -> Result<(), String>;

const SCENARIOS: &[(&str, Scenario)] = &[
    (
        "first_importer_ends_and_its_id_is_reused",
        first_importer_ends_and_its_id_is_reused,
    ),
    (
        "first_importer_runs_uvloop_in_the_same_attach",
        first_importer_runs_uvloop_in_the_same_attach,
    ),
    (
        "first_importer_keeps_its_thread_state",
        first_importer_keeps_its_thread_state,
    ),
    (
        "forked_child_of_a_rust_thread",
        forked_child_of_a_rust_thread,
    ),
    (
        "initialising_thread_ends_and_its_id_is_reused",
        initialising_thread_ends_and_its_id_is_reused,
    ),
    (
        "initialised_by_an_ended_thread_with_the_importers_id",
        initialised_by_an_ended_thread_with_the_importers_id,
    ),
    (
        "initialised_by_a_live_thread_then_initialize_python",
        initialised_by_a_live_thread_then_initialize_python,
    ),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--scenario") {
        let name = &args[at + 1];
        let (_, scenario) = SCENARIOS
            .iter()
            .find(|(known, _)| known == name)
            .expect("a known scenario");
        match scenario() {
            Ok(()) => std::process::exit(0),
            Err(wrong) => {
                eprintln!("{wrong}");
                std::process::exit(1);
            }
        }
    }
    let exe = std::env::current_exe().expect("this binary");
    let mut failed = Vec::new();
    for (name, _) in SCENARIOS {
        let output = Command::new(&exe)
            .args(["--scenario", name])
            .output()
            .expect("run a scenario");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            println!("{name}: held {stderr}");
        } else {
            println!("{name}: WRONG ({})\n{stderr}", output.status);
            failed.push(*name);
        }
    }
    assert!(failed.is_empty(), "scenarios that went wrong: {failed:?}");
}

/// The outcome of a uvloop run: right (ran, or refused before any loop) or wrong.
fn judge(py: Python<'_>, outcome: PyResult<i32>) -> Result<&'static str, String> {
    match outcome {
        Ok(7) => Ok("ran"),
        Ok(other) => Err(format!("ran, but returned {other}")),
        Err(err) if err.to_string().contains(REFUSAL) => Ok("refused"),
        Err(err) => Err(format!(
            "uvloop failed half-way: {err} (context: {:?})",
            err.value(py)
                .getattr("__context__")
                .map(|context| context.to_string())
        )),
    }
}

/// A uvloop run that ran, or was refused on a thread CPython does not take for its main one.
fn runs_or_is_refused_rightly(py: Python<'_>) -> Result<(), String> {
    let main = cpython_main_thread(py);
    match (judge(py, uvloop_run(py))?, main) {
        ("ran", _) | ("refused", false) => Ok(()),
        (what, main) => Err(format!(
            "{what} on a thread that CPython takes for its main one: {main}; then {}",
            plain_uvloop_run(py)
        )),
    }
}

fn uvloop_run(py: Python<'_>) -> PyResult<i32> {
    pyo3_async::run(py, LoopKind::Uvloop, async { PyResult::Ok(7) })
}

/// `uvloop.run` itself, without pyo3-async's refusal: what the refusal keeps from running.
fn plain_uvloop_run(py: Python<'_>) -> String {
    let ran = py.import("asyncio").and_then(|asyncio| {
        let sleep = asyncio.getattr("sleep")?.call1((0, 7))?;
        py.import("uvloop")?
            .call_method1("run", (sleep,))?
            .extract::<i32>()
    });
    match ran {
        Ok(7) => "uvloop.run ran".to_string(),
        other => format!("uvloop.run: {other:?}"),
    }
}

/// Runs `body` on the first new thread that gets `id`, an ended thread's, back; an error if
/// none does (glibc reuses a joined thread's stack, and with it its id, at once).
fn on_a_thread_with_id(
    id: u64,
    body: impl FnOnce() -> Result<(), String> + Send + Clone + 'static,
) -> Result<(), String> {
    (0..1_000)
        .find_map(|_| {
            let body = body.clone();
            std::thread::spawn(move || (this_thread_id() == id).then(body))
                .join()
                .expect("a new thread")
        })
        .unwrap_or_else(|| {
            Err("no new thread got the ended thread's id back: nothing was checked".into())
        })
}

/// This thread's id, as `threading.get_ident()` gives it, without importing `threading`.
fn this_thread_id() -> u64 {
    // SAFETY: `PyThread_get_thread_ident` reads the calling thread's id; it needs no attach.
    unsafe { pyo3::ffi::PyThread_get_thread_ident() as u64 }
}

fn get_ident(py: Python<'_>) -> u64 {
    py.import("threading")
        .and_then(|threading| threading.call_method0("get_ident"))
        .and_then(|id| id.extract())
        .expect("threading.get_ident()")
}

/// Whether CPython takes this thread for its main thread: `set_wakeup_fd` accepts only it.
fn cpython_main_thread(py: Python<'_>) -> bool {
    py.import("signal")
        .and_then(|signal| {
            let old = signal.call_method1("set_wakeup_fd", (-1,))?;
            signal.call_method1("set_wakeup_fd", (old,))
        })
        .is_ok()
}

/// Initialises Python on this thread; whether `threading` is still to be imported (a
/// `sitecustomize` or a `.pth` may import it at start-up, on this thread: then the two main
/// threads are the same, and the scenario has nothing to check).
fn initialize_before_threading() -> bool {
    Python::initialize();
    if Python::attach(threading_imported) {
        eprintln!("`threading` imported at start-up (sitecustomize, a .pth): nothing to check");
        return false;
    }
    true
}

fn threading_imported(py: Python<'_>) -> bool {
    py.import("sys")
        .and_then(|sys| sys.getattr("modules")?.contains("threading"))
        .expect("sys.modules")
}

/// Python initialised on the process's main thread (by the program, as PyO3's docs show), and a
/// worker thread that runs uvloop first: `threading` is first imported in that same attach
/// (pyo3-async's glue imports it), so it is `threading.main_thread()`, alive; uvloop takes it
/// for the main thread, CPython does not.
fn first_importer_runs_uvloop_in_the_same_attach() -> Result<(), String> {
    if !initialize_before_threading() {
        return Ok(());
    }
    std::thread::spawn(|| Python::attach(runs_or_is_refused_rightly))
        .join()
        .expect("the worker")
}

/// The same with a kept thread state (`keep_thread_state`, a tokio worker's hook): the first
/// importer's state never ends, so the refusal never sees `threading.main_thread()` end.
fn first_importer_keeps_its_thread_state() -> Result<(), String> {
    if !initialize_before_threading() {
        return Ok(());
    }
    std::thread::spawn(|| {
        pyo3_async::keep_thread_state();
        Python::attach(|py| drop(py.import("threading").expect("threading")));
        let outcome = Python::attach(runs_or_is_refused_rightly);
        pyo3_async::release_thread_state();
        outcome
    })
    .join()
    .expect("the worker")
}

/// Python initialised on the process's main thread; `threading` first imported on a thread
/// that then ends; a later thread gets its id back. uvloop takes it for the main thread,
/// CPython does not: refused, before any loop exists. Another thread runs uvloop as before.
fn first_importer_ends_and_its_id_is_reused() -> Result<(), String> {
    if !initialize_before_threading() {
        return Ok(());
    }
    let before_3_13 = Python::attach(|py| py.version_info() < (3, 13));
    let ended_id = std::thread::spawn(|| Python::attach(get_ident))
        .join()
        .expect("the importing thread");
    on_a_thread_with_id(ended_id, move || {
        Python::attach(|py| match judge(py, uvloop_run(py))? {
            "refused" if before_3_13 => Ok(()),
            "ran" if !before_3_13 => Ok(()),
            what => Err(format!(
                "{what} on a thread with the id of the ended importer"
            )),
        })
    })?;
    // A thread spawned while another holds the ended id runs uvloop.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || released.recv());
    let elsewhere = std::thread::spawn(move || {
        Python::attach(|py| {
            if get_ident(py) == ended_id {
                return Err("the holder did not take the ended thread's id".to_string());
            }
            match judge(py, uvloop_run(py))? {
                "ran" => Ok(()),
                what => Err(format!(
                    "{what} on a thread uvloop takes for a secondary one"
                )),
            }
        })
    })
    .join()
    .expect("another thread");
    release.send(()).expect("the holder waits");
    holder.join().expect("the holder").expect("released");
    elsewhere
}

/// A Rust thread (not a `threading` one) forks. In the child that thread is CPython's main
/// thread, and `threading`'s (`_after_fork` makes it a `_MainThread` on its thread state):
/// uvloop sets up signals there and works, so nothing should be refused. Once the attach that
/// forked ends, the state that `threading` tied its main thread to is deleted.
fn forked_child_of_a_rust_thread() -> Result<(), String> {
    pyo3_async::__private::initialize_python();
    std::thread::spawn(|| {
        let (pid, keeper) = Python::attach(|py| {
            let pid: i64 = py
                .import("os")
                .and_then(|os| os.call_method0("fork"))
                .and_then(|pid| pid.extract())
                .expect("os.fork()");
            if pid != 0 {
                return (pid, None);
            }
            // The child. A second thread state, kept by another thread, so that ending this
            // attach does not leave the interpreter without any (3.11 then aborts on the next
            // one: "init_threadstate: thread state already initialized", CPython's own).
            let (ready, kept) = std::sync::mpsc::channel::<()>();
            let (release, released) = std::sync::mpsc::channel::<()>();
            let keeper = std::thread::spawn(move || {
                pyo3_async::keep_thread_state();
                ready.send(()).unwrap();
                let _ = released.recv();
            });
            py.detach(move || kept.recv().unwrap());
            (pid, Some((keeper, release)))
        });
        if pid == 0 {
            let _keeper = keeper;
            // The child: this thread is CPython's main thread, its first attach ended.
            let code = Python::attach(|py| {
                if !cpython_main_thread(py) {
                    return 3;
                }
                match judge(py, uvloop_run(py)) {
                    Ok("ran") => 0,
                    Ok(_) => {
                        eprintln!("child, refused; then {}", plain_uvloop_run(py));
                        1
                    }
                    Err(wrong) => {
                        eprintln!("child: {wrong}");
                        2
                    }
                }
            });
            Python::attach(|py| {
                let _ = py
                    .import("os")
                    .and_then(|os| os.call_method1("_exit", (code,)));
            });
            unreachable!("os._exit");
        }
        let status: i32 = Python::attach(|py| {
            py.import("os")
                .and_then(|os| {
                    let (_, status): (i64, i32) =
                        os.call_method1("waitpid", (pid, 0))?.extract()?;
                    os.call_method1("waitstatus_to_exitcode", (status,))?
                        .extract()
                })
                .expect("os.waitpid")
        });
        match status {
            0 => Ok(()),
            1 => Err(
                "forked child: CPython's main thread (set_wakeup_fd accepts it), and \
                      pyo3_async::run(Uvloop) refused it as a thread uvloop mistakes for the \
                      main one"
                    .to_string(),
            ),
            3 => Err("forked child: the forking thread is not CPython's main thread".to_string()),
            other => Err(format!("forked child: exit status {other}")),
        }
    })
    .join()
    .expect("the forking thread")
}

/// `initialize_python` on a thread that ends (a libtest thread); a later thread gets its id:
/// CPython and uvloop both take it for the main thread, so uvloop runs, with its signals.
fn initialising_thread_ends_and_its_id_is_reused() -> Result<(), String> {
    let ended_id = std::thread::spawn(|| {
        pyo3_async::__private::initialize_python();
        Python::attach(get_ident)
    })
    .join()
    .expect("the initialising thread");
    on_a_thread_with_id(ended_id, || {
        Python::attach(|py| {
            if !cpython_main_thread(py) {
                return Err("the reusing thread is not CPython's main thread".to_string());
            }
            match judge(py, uvloop_run(py))? {
                "ran" => Ok(()),
                _ => Err("refused a thread both CPython and uvloop take for the main one".into()),
            }
        })
    })
}

/// A plain `#[test]` initialises Python (`Python::initialize`, or an attach with
/// `auto-initialize`) on its thread, which ends; a `#[pyo3_async::test]` (`initialize_python`)
/// then runs on a thread that got the same id, as libtest's threads do: CPython's main thread
/// and `threading`'s then have the same id, and uvloop works on any thread with it. (A refusal
/// that judged by `threading.main_thread()`'s state, deleted when the attach that imported
/// `threading` ended, refused it.)
fn initialised_by_an_ended_thread_with_the_importers_id() -> Result<(), String> {
    // Not `threading.get_ident()`: `threading` must not be imported there.
    let initialiser = std::thread::spawn(|| {
        Python::initialize();
        this_thread_id()
    })
    .join()
    .expect("the initialising thread");
    on_a_thread_with_id(initialiser, || {
        pyo3_async::__private::initialize_python();
        Python::attach(runs_or_is_refused_rightly)
    })
}

/// The same with the initialising thread alive while `initialize_python` runs elsewhere: a
/// thread that reuses the importer's id is refused (CPython's main thread is another), and
/// `run_test` (its loop on a thread of its own) runs uvloop.
fn initialised_by_a_live_thread_then_initialize_python() -> Result<(), String> {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (ready, initialised) = std::sync::mpsc::channel::<()>();
    let initialiser = std::thread::spawn(move || {
        Python::initialize();
        ready.send(()).unwrap();
        released.recv().unwrap();
    });
    initialised.recv().unwrap();
    let importer_id = std::thread::spawn(|| {
        pyo3_async::__private::initialize_python();
        pyo3_async::__private::run_test(LoopKind::Uvloop, async { PyResult::Ok(()) });
        Python::attach(get_ident)
    })
    .join()
    .expect("the importing thread");
    let outcome = on_a_thread_with_id(importer_id, || Python::attach(runs_or_is_refused_rightly));
    release.send(()).unwrap();
    initialiser.join().unwrap();
    outcome
}

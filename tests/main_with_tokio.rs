//! `#[pyo3_async::main(uvloop, tokio, debug)]` as a whole program (a test without the
//! harness): tokio's timers and tasks in `main`'s body, on uvloop in asyncio's debug mode.

use std::time::Duration;

use pyo3::prelude::*;

#[pyo3_async::main(uvloop, tokio, debug)]
async fn main() -> PyResult<()> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    let spawned = tokio::spawn(async { 42 }).await.expect("a tokio task");
    assert_eq!(spawned, 42);
    Python::attach(|py| {
        let running = py.import("asyncio")?.call_method0("get_running_loop")?;
        assert!(running.call_method0("get_debug")?.extract::<bool>()?);
        assert_eq!(running.get_type().name()?.extract::<String>()?, "Loop");
        PyResult::Ok(())
    })
}

//! The `tokio-default` feature: every entry point polls its body inside the tokio runtime's
//! context, with no option written (`cargo test --features tokio-default --test tokio_default`).

use std::time::Duration;

use pyo3::prelude::*;
use pyo3_async::LoopKind;

#[test]
fn run_polls_its_future_in_the_runtime() -> PyResult<()> {
    pyo3_async::__private::initialize_python();
    Python::attach(|py| {
        for kind in LoopKind::ALL {
            let slept = pyo3_async::run(py, kind, async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                PyResult::Ok("slept")
            })?;
            assert_eq!(slept, "slept", "{kind}");
        }
        PyResult::Ok(())
    })
}

#[pyo3_async::test]
async fn test_bodies_too() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

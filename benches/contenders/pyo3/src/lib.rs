//! PyO3 0.30's own `experimental-async`: `#[pyfunction] async fn` (asyncio only).

use std::sync::OnceLock;

use pyo3::prelude::*;

fn tokio() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("a tokio runtime")
    })
}

#[pyfunction]
#[allow(unused_variables)]
async fn ready(trio: bool) -> u64 {
    1
}

#[pyfunction]
#[allow(unused_variables)]
async fn tokio_wake(trio: bool) -> u64 {
    let _ = tokio().spawn(async {}).await;
    1
}

#[pyfunction]
#[allow(unused_variables)]
async fn pending(trio: bool) -> u64 {
    std::future::pending().await
}

#[pymodule]
fn bench_pyo3(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ready, m)?)?;
    m.add_function(wrap_pyfunction!(tokio_wake, m)?)?;
    m.add_function(wrap_pyfunction!(pending, m)?)?;
    Ok(())
}

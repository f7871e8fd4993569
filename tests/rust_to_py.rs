//! Rust futures and streams driven by Python event loops inside an embedded interpreter, with
//! wake-ups from tokio and smol (whose timers run on their own threads).

mod common;

use std::time::Duration;

use futures::StreamExt;
use pyo3::prelude::*;
use pyo3_async::{AllowThreads, AsyncGenerator, Coroutine};

use common::{namespace, raised_on, run_on, LOOPS};

fn tokio() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().expect("a tokio runtime"))
}

#[test]
fn coroutine_woken_by_tokio_and_smol_on_every_loop() -> PyResult<()> {
    Python::attach(|py| {
        let helpers = namespace(py)?;
        for name in LOOPS {
            let from_tokio = Coroutine::new(async {
                tokio()
                    .spawn(async { tokio::time::sleep(Duration::from_millis(1)).await })
                    .await
                    .expect("tokio task");
                PyResult::Ok("tokio")
            });
            let value = run_on(&helpers, name, Bound::new(py, from_tokio)?.into_any())?;
            assert_eq!(value.extract::<String>()?, "tokio", "on {name}");

            let from_smol = Coroutine::new(AllowThreads::new(async {
                smol::Timer::after(Duration::from_millis(1)).await;
                PyResult::Ok(7)
            }));
            let value = run_on(&helpers, name, Bound::new(py, from_smol)?.into_any())?;
            assert_eq!(value.extract::<i32>()?, 7, "on {name}");
        }
        Ok(())
    })
}

#[test]
fn errors_and_panics_reach_python_as_exceptions() -> PyResult<()> {
    Python::attach(|py| {
        let helpers = namespace(py)?;
        for name in LOOPS {
            let failing = Coroutine::new(async {
                smol::Timer::after(Duration::from_millis(1)).await;
                Err::<(), _>(pyo3::exceptions::PyKeyError::new_err("missing"))
            });
            let raised = raised_on(&helpers, name, Bound::new(py, failing)?.into_any())?;
            assert!(
                raised.is_instance_of::<pyo3::exceptions::PyKeyError>(),
                "{name}: {raised:?} {:?}",
                raised.getattr("__context__").map(|c| c.to_string())
            );

            let panicking = Coroutine::new(async move {
                smol::Timer::after(Duration::from_millis(1)).await;
                panic!("panicked on {name}");
                #[allow(unreachable_code)]
                PyResult::Ok(())
            });
            let raised = raised_on(&helpers, name, Bound::new(py, panicking)?.into_any())?;
            assert!(raised.is_instance_of::<pyo3::panic::PanicException>());
            assert_eq!(raised.str()?.to_string(), format!("panicked on {name}"));
        }
        Ok(())
    })
}

#[test]
fn streams_from_tokio_channels_on_every_loop() -> PyResult<()> {
    Python::attach(|py| {
        let helpers = namespace(py)?;
        let drain = helpers.get_item("drain")?.expect("helpers defined");
        for name in LOOPS {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio().spawn(async move {
                for i in 0..100u32 {
                    tx.send(PyResult::Ok(i)).await.expect("receiver alive");
                }
            });
            let items = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            let generator = Bound::new(py, AsyncGenerator::new(items.boxed()))?;
            let drained = run_on(&helpers, name, drain.call1((generator,))?)?;
            assert_eq!(drained.extract::<Vec<u32>>()?, (0..100).collect::<Vec<_>>());
        }
        Ok(())
    })
}

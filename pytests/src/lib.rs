//! Test extension module for the pytest suite: small Rust futures and streams that exercise
//! each path of the bridge. Every function returns a `Coroutine` or an `AsyncGenerator`.

mod attack5;
mod awaiting;
mod core;
mod coroutines;
mod generators;
mod lifetime;
mod local;
mod machinery;
mod macro_shapes;
mod macros;
mod marked;
mod native;
// The README's examples, for test_readme.py; not in `cargo test` (their `#[pyo3_async::test]`
// example runs as a doctest of the crate).
#[cfg(not(test))]
mod readme {
    include!(concat!(env!("OUT_DIR"), "/readme.rs"));
}
mod shutdown;
mod spans;
mod storm;
mod wakers;
mod with_tokio;

use std::sync::OnceLock;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyModule;
use pyo3_async::{Backend, Coroutine};

pub(crate) fn tokio() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

pub(crate) fn backend(name: Option<&str>) -> PyResult<Option<Backend>> {
    match name {
        None => Ok(None),
        Some("asyncio") => Ok(Some(Backend::Asyncio)),
        Some("trio") => Ok(Some(Backend::Trio)),
        Some(other) => Err(PyValueError::new_err(format!("unknown backend {other}"))),
    }
}

pub(crate) fn coroutine(coroutine: Coroutine, name: Option<&str>) -> PyResult<Coroutine> {
    Ok(match backend(name)? {
        Some(backend) => coroutine.with_backend(backend),
        None => coroutine,
    })
}

/// `pyo3_async::set_panic_style`: PyO3's `PanicException` when `yes`, else `PanicError`.
#[pyfunction]
fn use_pyo3_panics(yes: bool) {
    pyo3_async::set_panic_style(if yes {
        pyo3_async::PanicStyle::PyO3
    } else {
        pyo3_async::PanicStyle::Exception
    });
}

#[pymodule]
fn pyo3_async_pytests(m: &Bound<'_, PyModule>) -> PyResult<()> {
    attack5::register(m)?;
    coroutines::register(m)?;
    wakers::register(m)?;
    generators::register(m)?;
    awaiting::register(m)?;
    macros::register(m)?;
    macro_shapes::register(m)?;
    marked::register(m)?;
    local::register(m)?;
    lifetime::register(m)?;
    machinery::register(m)?;
    native::register(m)?;
    storm::register(m)?;
    pyo3_async::add_types(m)?;
    m.add_function(wrap_pyfunction!(use_pyo3_panics, m)?)?;
    core::register(m)?;
    shutdown::register(m)?;
    with_tokio::register(m)?;
    #[cfg(not(test))]
    readme::register(m)?;
    Ok(())
}

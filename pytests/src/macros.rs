//! The `pyo3_async` attribute macros and the `Account` pyclass (test_macros.py).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyModule;
// Only named in a `#[pyo3(cancel_handle)]` parameter: the macro must use it (no unused import).
use pyo3_async::CancelHandle;

use crate::coroutines::{suspend_once, DropGuard, Probe};
use crate::tokio;
use crate::wakers::Latch;

// ---- The attribute macros ----

/// Returns `value` after a tokio timer.
#[pyo3_async::pyfunction]
async fn macro_sleep(seconds: f64, value: Option<Py<PyAny>>) -> Option<Py<PyAny>> {
    let _ = tokio()
        .spawn(async move { tokio::time::sleep(Duration::from_secs_f64(seconds)).await })
        .await;
    value
}

#[pyo3_async::pyfunction(name = "macro_renamed", signature = (a, b = 2))]
async fn macro_add(a: i64, b: i64) -> PyResult<i64> {
    suspend_once().await;
    a.checked_add(b)
        .ok_or_else(|| pyo3::exceptions::PyOverflowError::new_err("overflow"))
}

#[pyo3_async::pyfunction]
async fn macro_fail(exception: Py<PyAny>) -> PyResult<()> {
    suspend_once().await;
    Err(Python::attach(|py| {
        PyErr::from_value(exception.into_bound(py))
    }))
}

#[pyo3_async::pyfunction]
async fn macro_unit() {
    suspend_once().await;
}

#[pyo3_async::pyfunction(trio)]
async fn macro_trio_only() -> &'static str {
    suspend_once().await;
    "trio"
}

#[pyo3_async::pyfunction(asyncio)]
async fn macro_asyncio_only() -> &'static str {
    suspend_once().await;
    "asyncio"
}

/// Blocks its poll on the latch (see `block_on_latch`), with the interpreter released.
#[pyo3_async::pyfunction(allow_threads)]
async fn macro_block_on_latch(latch: Py<Latch>, timeout: f64) -> bool {
    latch.get().block(timeout)
}

#[pyo3_async::pyfunction(generator)]
async fn macro_count(n: u64) -> impl futures::Stream<Item = PyResult<u64>> + Send {
    suspend_once().await;
    futures::stream::iter((0..n).map(Ok))
}

#[pyo3_async::pyfunction(pass_module)]
async fn macro_module_name(module: Py<PyModule>) -> PyResult<String> {
    suspend_once().await;
    Python::attach(|py| Ok(module.bind(py).name()?.to_string()))
}

#[pyo3_async::pyfunction]
async fn macro_pending(probe: Py<Probe>) {
    let guard = DropGuard(Arc::new(probe));
    let _guard = &guard;
    std::future::pending::<()>().await;
}

/// Waits for its cancellation through PyO3's cancel-handle parameter, logs it, and lets it
/// through.
#[pyo3_async::pyfunction]
async fn macro_until_cancelled(
    #[pyo3(cancel_handle)] cancel: CancelHandle,
    log: Py<PyAny>,
) -> PyResult<()> {
    let exception = cancel.cancelled().await;
    Python::attach(|py| log.call_method1(py, "append", ("cancelled",)))?;
    Err(exception)
}

/// A bank account whose async methods borrow `&self` across suspensions.
#[pyclass(frozen)]
struct Account {
    balance: std::sync::atomic::AtomicI64,
}

#[pyo3_async::pymethods]
impl Account {
    #[new]
    fn new(balance: i64) -> Self {
        Account {
            balance: balance.into(),
        }
    }

    #[getter]
    fn balance(&self) -> i64 {
        self.balance.load(Ordering::SeqCst)
    }

    async fn deposit(&self, amount: i64) -> i64 {
        suspend_once().await;
        self.balance.fetch_add(amount, Ordering::SeqCst) + amount
    }

    #[pyo3(name = "withdraw")]
    async fn take(&self, amount: i64) -> PyResult<i64> {
        suspend_once().await;
        let balance = self.balance.fetch_sub(amount, Ordering::SeqCst) - amount;
        if balance < 0 {
            self.balance.fetch_add(amount, Ordering::SeqCst);
            return Err(PyValueError::new_err("insufficient funds"));
        }
        Ok(balance)
    }

    /// Holds until cancelled (the handle is not a Python argument).
    async fn hold(
        &self,
        log: Py<PyAny>,
        #[pyo3(cancel_handle)] cancel: pyo3_async::CancelHandle,
    ) -> PyResult<()> {
        let exception = cancel.cancelled().await;
        Python::attach(|py| log.call_method1(py, "append", ("held until cancelled",)))?;
        Err(exception)
    }

    /// PyO3's method options, in `#[pyo3(...)]`: a name, a signature with a default.
    #[pyo3(name = "renamed_method", signature = (a, b = 2))]
    async fn original_method(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    /// The same options in `#[pyo3_async(...)]`, and a text signature.
    #[pyo3_async(name = "renamed_too", signature = (a, b = 3), text_signature = "($self, a, b=3)")]
    async fn original_too(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    /// `async with account as same:` (a dunder: its hidden body must not warn).
    async fn __aenter__(&self) -> i64 {
        suspend_once().await;
        self.balance.load(Ordering::SeqCst)
    }

    async fn __aexit__(&self, _kind: Py<PyAny>, _value: Py<PyAny>, _traceback: Py<PyAny>) -> bool {
        suspend_once().await;
        false
    }

    /// Never compiled: the hidden body goes with its wrapper (it calls nothing that exists).
    #[cfg(any())]
    async fn never(&self) -> i64 {
        missing_function().await
    }

    /// Lint attributes reach the body they are about (`expect` on the wrapper would go
    /// unfulfilled, an unused argument would warn in the body).
    #[expect(unused_variables)]
    async fn ignores(&self, unused: i64) -> i64 {
        1
    }

    #[staticmethod]
    #[pyo3_async(trio)]
    async fn bank() -> &'static str {
        suspend_once().await;
        "trio bank"
    }
}

/// PyO3's signature syntax in the macro's own options: keyword-only and positional-only.
#[pyo3_async::pyfunction(signature = (a, *, key = 1))]
async fn keyword_only(a: i64, key: i64) -> i64 {
    a + key
}

#[pyo3_async::pyfunction(signature = (a, /, b = 2))]
async fn positional_only(a: i64, b: i64) -> i64 {
    a + b
}

/// A keyword as a name: Python sees `type`, and so does the coroutine's name.
#[pyo3_async::pyfunction]
async fn r#type(value: i64) -> i64 {
    value
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(r#type, m)?)?;
    m.add_function(wrap_pyfunction!(keyword_only, m)?)?;
    m.add_function(wrap_pyfunction!(positional_only, m)?)?;
    m.add_function(wrap_pyfunction!(macro_sleep, m)?)?;
    m.add_function(wrap_pyfunction!(macro_add, m)?)?;
    m.add_function(wrap_pyfunction!(macro_fail, m)?)?;
    m.add_function(wrap_pyfunction!(macro_unit, m)?)?;
    m.add_function(wrap_pyfunction!(macro_trio_only, m)?)?;
    m.add_function(wrap_pyfunction!(macro_asyncio_only, m)?)?;
    m.add_function(wrap_pyfunction!(macro_block_on_latch, m)?)?;
    m.add_function(wrap_pyfunction!(macro_count, m)?)?;
    m.add_function(wrap_pyfunction!(macro_until_cancelled, m)?)?;
    m.add_function(wrap_pyfunction!(macro_module_name, m)?)?;
    m.add_function(wrap_pyfunction!(macro_pending, m)?)?;
    m.add_class::<Account>()?;
    Ok(())
}

//! Test extension module for the pytest suite: small Rust futures and streams that exercise
//! each path of the bridge. Every function returns a `Coroutine` or an `AsyncGenerator`.

mod core;
mod shutdown;
mod with_tokio;

use std::future::poll_fn;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Poll, Waker};
use std::time::Duration;

use event_listener::Event;
use futures::{Stream, StreamExt};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyModule;
use pyo3_async::{
    AllowThreads, AsyncGenerator, Backend, Coroutine, EventLoop, PyAsyncIter, PyFuture,
};

fn tokio() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

fn backend(name: Option<&str>) -> PyResult<Option<Backend>> {
    match name {
        None => Ok(None),
        Some("asyncio") => Ok(Some(Backend::Asyncio)),
        Some("trio") => Ok(Some(Backend::Trio)),
        Some(other) => Err(PyValueError::new_err(format!("unknown backend {other}"))),
    }
}

fn coroutine(coroutine: Coroutine, name: Option<&str>) -> PyResult<Coroutine> {
    Ok(match backend(name)? {
        Some(backend) => coroutine.with_backend(backend),
        None => coroutine,
    })
}

/// Returns `value` at the first poll.
#[pyfunction]
#[pyo3(signature = (value, backend = None))]
fn ready(value: Py<PyAny>, backend: Option<&str>) -> PyResult<Coroutine> {
    coroutine(Coroutine::new(async move { Ok(value) }), backend)
}

/// Returns `value` after a tokio timer: the wake-up comes from a tokio worker thread.
#[pyfunction]
#[pyo3(signature = (seconds, value = None, backend = None))]
fn sleep(seconds: f64, value: Option<Py<PyAny>>, backend: Option<&str>) -> PyResult<Coroutine> {
    let timer =
        tokio().spawn(async move { tokio::time::sleep(Duration::from_secs_f64(seconds)).await });
    coroutine(
        Coroutine::new(async move {
            let _ = timer.await;
            Ok(value)
        }),
        backend,
    )
}

/// Completes when an empty tokio task has run: a wake-up from a tokio worker, no timer.
#[pyfunction]
fn tokio_noop() -> Coroutine {
    Coroutine::new(async move {
        tokio()
            .spawn(async {})
            .await
            .map_err(|err| PyValueError::new_err(err.to_string()))
    })
}

/// Returns `value` once a plain OS thread, started at the first poll, completes a channel.
#[pyfunction]
fn from_thread(value: Py<PyAny>) -> Coroutine {
    Coroutine::new(async move {
        let (tx, rx) = futures::channel::oneshot::channel();
        std::thread::spawn(move || tx.send(value));
        rx.await
            .map_err(|_| PyValueError::new_err("the thread dropped the channel"))
    })
}

/// Wakes itself `times` times while being polled, then returns the number of polls.
#[pyfunction]
fn yield_now(times: usize) -> Coroutine {
    Coroutine::new(async move {
        let mut polls = 0;
        poll_fn(|cx| {
            polls += 1;
            if polls > times {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
        Ok(polls)
    })
}

/// Pending once (woken at once), so that the outcome comes after a real suspension.
async fn suspend_once() {
    let mut suspended = false;
    poll_fn(|cx| {
        if suspended {
            Poll::Ready(())
        } else {
            suspended = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// Raises `exception` (an instance), at once or after one suspension.
#[pyfunction]
#[pyo3(signature = (exception, suspend = true))]
fn fail(exception: Py<PyAny>, suspend: bool) -> Coroutine {
    Coroutine::new(async move {
        if suspend {
            suspend_once().await;
        }
        Python::attach(|py| Err::<(), _>(PyErr::from_value(exception.into_bound(py))))
    })
}

/// Panics with `message`, at once or after one suspension.
#[pyfunction]
#[pyo3(signature = (message, suspend = true))]
fn panic(message: String, suspend: bool) -> Coroutine {
    Coroutine::new(async move {
        if suspend {
            suspend_once().await;
        }
        if !message.is_empty() {
            panic!("{message}");
        }
        PyResult::Ok(())
    })
}

/// A future whose destructor panics, ready with 7 or pending forever (its waker not kept).
struct PanicsOnDrop {
    ready: bool,
}

impl std::future::Future for PanicsOnDrop {
    type Output = PyResult<u32>;

    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match self.ready {
            true => Poll::Ready(Ok(7)),
            false => Poll::Pending,
        }
    }
}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("PanicsOnDrop dropped");
    }
}

/// A coroutine over a future whose destructor panics.
#[pyfunction]
fn panics_on_drop(ready: bool) -> Coroutine {
    Coroutine::new(PanicsOnDrop { ready })
}

/// Records what happened to a Rust future or stream, for the test to check.
#[pyclass(frozen)]
#[derive(Default)]
struct Probe {
    polled: AtomicUsize,
    dropped: AtomicBool,
    cleaned_up: AtomicBool,
}

#[pymethods]
impl Probe {
    #[new]
    fn new() -> Self {
        Probe::default()
    }

    #[getter]
    fn polled(&self) -> usize {
        self.polled.load(Ordering::SeqCst)
    }

    #[getter]
    fn dropped(&self) -> bool {
        self.dropped.load(Ordering::SeqCst)
    }

    #[getter]
    fn cleaned_up(&self) -> bool {
        self.cleaned_up.load(Ordering::SeqCst)
    }
}

/// Marks its probe dropped when dropped.
struct DropGuard(Arc<Py<Probe>>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.get().dropped.store(true, Ordering::SeqCst);
    }
}

/// Never completes; the probe tells whether it was polled and dropped.
#[pyfunction]
fn pending_forever(probe: Py<Probe>) -> Coroutine {
    let guard = DropGuard(Arc::new(probe));
    Coroutine::new(async move {
        let _guard = &guard;
        poll_fn(|_| {
            guard.0.get().polled.fetch_add(1, Ordering::SeqCst);
            Poll::<()>::Pending
        })
        .await;
        PyResult::Ok(())
    })
}

/// Waits for the cancellation, cleans up asynchronously (a round trip through a tokio worker),
/// marks the probe and returns the cancellation exception.
#[pyfunction]
#[pyo3(signature = (probe, result = None))]
fn cleanup_on_cancel(probe: Py<Probe>, result: Option<Py<PyAny>>) -> Coroutine {
    let guard = DropGuard(Arc::new(probe));
    Coroutine::with_cancel_handle(move |cancel| async move {
        let exception = cancel.cancelled().await;
        let _ = tokio().spawn(tokio::task::yield_now()).await;
        suspend_once().await;
        guard.0.get().cleaned_up.store(true, Ordering::SeqCst);
        match result {
            Some(result) => Ok(result),
            None => Err(exception),
        }
    })
}

/// A one-shot event fired from Python, on the loop thread or from another thread.
#[pyclass(frozen)]
#[derive(Default)]
struct Trigger {
    fired: AtomicBool,
    event: Event,
}

impl Trigger {
    fn fire_now(&self) {
        self.fired.store(true, Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }

    async fn fired(&self) {
        while !self.fired.load(Ordering::SeqCst) {
            let listener = self.event.listen();
            if self.fired.load(Ordering::SeqCst) {
                break;
            }
            listener.await;
        }
    }
}

#[pymethods]
impl Trigger {
    #[new]
    fn new() -> Self {
        Trigger::default()
    }

    /// Fires in the calling thread: wakers run right here.
    fn fire(&self) {
        self.fire_now();
    }

    /// Fires from a new OS thread and waits for it, with the interpreter released.
    fn fire_from_thread(slf: Py<Self>, py: Python<'_>) {
        py.detach(|| {
            std::thread::spawn(move || slf.get().fire_now())
                .join()
                .expect("the firing thread")
        });
    }

    /// Completes with `value` once fired.
    #[pyo3(signature = (value = None, backend = None))]
    fn wait(slf: Py<Self>, value: Option<Py<PyAny>>, backend: Option<&str>) -> PyResult<Coroutine> {
        coroutine(
            Coroutine::new(async move {
                slf.get().fired().await;
                Ok(value)
            }),
            backend,
        )
    }
}

/// Keeps the waker of a pending future, to wake it later from anywhere.
#[pyclass(frozen)]
#[derive(Default)]
struct WakerStash {
    waker: Mutex<Option<Waker>>,
    wakes: AtomicUsize,
}

#[pymethods]
impl WakerStash {
    #[new]
    fn new() -> Self {
        WakerStash::default()
    }

    /// Pending until woken through the stash `times` times.
    fn wait(slf: Py<Self>, times: usize) -> Coroutine {
        Coroutine::new(async move {
            poll_fn(|cx| {
                let stash = slf.get();
                *stash.waker.lock().expect("stash lock") = Some(cx.waker().clone());
                if stash.wakes.load(Ordering::SeqCst) >= times {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            PyResult::Ok(())
        })
    }

    #[getter]
    fn has_waker(&self) -> bool {
        self.waker.lock().expect("stash lock").is_some()
    }

    /// Wakes the stashed waker `times` times from `threads` OS threads at once, and waits for
    /// them with the interpreter released.
    #[pyo3(signature = (times = 1, threads = 1))]
    fn wake_from_threads(slf: Py<Self>, py: Python<'_>, times: usize, threads: usize) {
        let waker = slf.get().waker.lock().expect("stash lock").clone();
        let Some(waker) = waker else { return };
        py.detach(|| {
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| {
                        for _ in 0..times {
                            slf.get().wakes.fetch_add(1, Ordering::SeqCst);
                            waker.wake_by_ref();
                        }
                    });
                }
            })
        });
    }

    /// Wakes the stashed waker in the calling thread.
    fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        if let Some(waker) = self.waker.lock().expect("stash lock").clone() {
            waker.wake();
        }
    }
}

/// A latch between a blocking Rust poll and a Python thread: the poll announces that it has
/// started blocking, then waits (at most a timeout) for the thread to set the latch.
#[pyclass(frozen)]
#[derive(Default)]
struct Latch {
    /// (the poll is blocking, the latch is set)
    state: Mutex<(bool, bool)>,
    changed: std::sync::Condvar,
}

#[pymethods]
impl Latch {
    #[new]
    fn new() -> Self {
        Latch::default()
    }

    /// Waits, with the interpreter released, until a poll blocks on the latch. Returning to
    /// Python needs the interpreter: that happens during the poll only if the poll released it.
    fn wait_blocked(&self, py: Python<'_>) {
        py.detach(|| {
            let state = self.state.lock().expect("latch lock");
            drop(
                self.changed
                    .wait_while(state, |(blocking, _)| !*blocking)
                    .expect("latch lock"),
            );
        });
    }

    fn set(&self) {
        self.state.lock().expect("latch lock").1 = true;
        self.changed.notify_all();
    }
}

impl Latch {
    /// Announces that it blocks, then blocks until set (at most `timeout` seconds); whether
    /// it was set.
    fn block(&self, timeout: f64) -> bool {
        let mut state = self.state.lock().expect("latch lock");
        state.0 = true;
        self.changed.notify_all();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, Duration::from_secs_f64(timeout), |(_, set)| !*set)
            .expect("latch lock");
        state.1
    }
}

/// A poll that blocks its thread until the latch is set (at most `timeout` seconds) and
/// returns whether it was: only a poll with the interpreter released lets a Python thread in.
#[pyfunction]
#[pyo3(signature = (latch, timeout, allow_threads))]
fn block_on_latch(latch: Py<Latch>, timeout: f64, allow_threads: bool) -> Coroutine {
    let wait = async move { PyResult::Ok(latch.get().block(timeout)) };
    if allow_threads {
        Coroutine::new(AllowThreads::new(wait))
    } else {
        Coroutine::new(wait)
    }
}

fn generator<S, T>(stream: S, name: Option<&str>) -> PyResult<AsyncGenerator>
where
    S: Stream<Item = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    let generator = AsyncGenerator::new(stream);
    Ok(match backend(name)? {
        Some(backend) => generator.with_backend(backend),
        None => generator,
    })
}

/// Yields 0..n, every item ready at once.
#[pyfunction]
#[pyo3(signature = (n, backend = None))]
fn count(n: u64, backend: Option<&str>) -> PyResult<AsyncGenerator> {
    generator(futures::stream::iter((0..n).map(PyResult::Ok)), backend)
}

/// Yields 0..n, each item sent by a tokio task through a channel (woken from tokio threads).
#[pyfunction]
#[pyo3(signature = (n, allow_threads = false))]
fn count_from_tokio(n: u64, allow_threads: bool) -> PyResult<AsyncGenerator> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio().spawn(async move {
        for i in 0..n {
            if tx.send(PyResult::Ok(i)).await.is_err() {
                break;
            }
        }
    });
    let items = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    if allow_threads {
        generator(AllowThreads::new(items), None)
    } else {
        generator(items, None)
    }
}

/// Yields 0..k, then raises `exception`.
#[pyfunction]
fn fail_after(k: u64, exception: Py<PyAny>) -> AsyncGenerator {
    let error = futures::stream::once(async move {
        suspend_once().await;
        Python::attach(|py| Err(PyErr::from_value(exception.into_bound(py))))
    });
    AsyncGenerator::new(futures::stream::iter((0..k).map(PyResult::Ok)).chain(error))
}

/// Yields 0..k, then panics.
#[pyfunction]
fn panic_after(k: u64, message: String) -> AsyncGenerator {
    let panic = futures::stream::once(async move {
        suspend_once().await;
        panic!("{message}");
    });
    AsyncGenerator::new(futures::stream::iter((0..k).map(PyResult::Ok)).chain(panic))
}

/// Yields 0..k, then stays pending; the probe tells when the stream is dropped.
#[pyfunction]
fn endless(k: u64, probe: Py<Probe>) -> AsyncGenerator {
    let guard = DropGuard(Arc::new(probe));
    let pending = futures::stream::poll_fn(move |_| {
        guard.0.get().polled.fetch_add(1, Ordering::SeqCst);
        Poll::<Option<PyResult<u64>>>::Pending
    });
    AsyncGenerator::new(futures::stream::iter((0..k).map(PyResult::Ok)).chain(pending))
}

/// Awaits `first` and then `second` inside one Rust future polled by one coroutine; used to
/// show that a future can keep several wake sources (here: two triggers).
#[pyfunction]
fn both(first: Py<Trigger>, second: Py<Trigger>) -> Coroutine {
    Coroutine::new(async move {
        let mut a = pin!(first.get().fired());
        let mut b = pin!(second.get().fired());
        futures::future::join(a.as_mut(), b.as_mut()).await;
        PyResult::Ok("both")
    })
}

/// Awaits a Python awaitable inside the coroutine (delegation) and returns its result.
#[pyfunction]
fn await_py(awaitable: &Bound<'_, PyAny>) -> PyResult<Coroutine> {
    let future = PyFuture::new(awaitable)?;
    Ok(Coroutine::new(future))
}

/// Awaits several awaitables at once (a join): they run as tasks of the coroutine's loop.
#[pyfunction]
fn await_all(awaitables: Vec<Bound<'_, PyAny>>) -> PyResult<Coroutine> {
    let futures = awaitables
        .iter()
        .map(PyFuture::new)
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Coroutine::new(async move {
        futures::future::try_join_all(futures).await
    }))
}

/// Awaits several awaitables one after the other, summing their (integer) results.
#[pyfunction]
fn await_in_sequence(awaitables: Vec<Bound<'_, PyAny>>) -> PyResult<Coroutine> {
    let futures = awaitables
        .iter()
        .map(|awaitable| PyFuture::new(awaitable).map(PyFuture::extract::<i64>))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Coroutine::new(async move {
        let mut total = 0;
        for future in futures {
            total += future.await?;
        }
        Ok(total)
    }))
}

/// Awaits `awaitable` with a tokio timer racing it: returns `"timeout"` if the timer wins.
#[pyfunction]
fn await_with_timeout(awaitable: &Bound<'_, PyAny>, seconds: f64) -> PyResult<Coroutine> {
    let future = PyFuture::new(awaitable)?;
    let timer = tokio().spawn(async move {
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    });
    Ok(Coroutine::new(async move {
        futures::pin_mut!(future);
        match futures::future::select(future, timer).await {
            futures::future::Either::Left((result, _)) => result,
            futures::future::Either::Right(_) => {
                Python::attach(|py| Ok("timeout".into_pyobject(py)?.into_any().unbind()))
            }
        }
    }))
}

/// Awaits a Python awaitable without a coroutine around it: a clear error.
#[pyfunction]
fn await_outside_coroutine(awaitable: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let future = PyFuture::new(awaitable)?;
    awaitable
        .py()
        .detach(|| futures::executor::block_on(future))
}

/// Schedules `awaitable` on the current loop from a tokio task and returns its result.
#[pyfunction]
fn spawn_from_tokio(py: Python<'_>, awaitable: Py<PyAny>) -> PyResult<Coroutine> {
    let event_loop = EventLoop::current(py)?;
    let task = tokio().spawn(async move {
        let future = Python::attach(|py| event_loop.spawn(awaitable.bind(py)))?;
        future.await
    });
    Ok(Coroutine::new(async move {
        task.await
            .map_err(|err| PyValueError::new_err(err.to_string()))?
    }))
}

/// Like `spawn_from_tokio`, but the tokio thread never attaches: `coroutine_function()` is
/// called on the loop thread (`EventLoop::spawn_with`).
#[pyfunction]
fn spawn_with_from_tokio(py: Python<'_>, coroutine_function: Py<PyAny>) -> PyResult<Coroutine> {
    let event_loop = EventLoop::current(py)?;
    let task = tokio().spawn(async move {
        event_loop
            .spawn_with(move |py| coroutine_function.bind(py).call0())
            .await
    });
    Ok(Coroutine::new(async move {
        task.await
            .map_err(|err| PyValueError::new_err(err.to_string()))?
    }))
}

/// Collects every item of a Python async iterable through `PyAsyncIter`, consumed on tokio.
#[pyfunction]
#[pyo3(signature = (iterable, capacity = 64))]
fn collect_async_iter(
    py: Python<'_>,
    iterable: &Bound<'_, PyAny>,
    capacity: usize,
) -> PyResult<Coroutine> {
    let items = PyAsyncIter::with_capacity(&EventLoop::current(py)?, iterable, capacity)?;
    let task = tokio().spawn(async move {
        let items: Vec<PyResult<Py<PyAny>>> = items.collect().await;
        items.into_iter().collect::<PyResult<Vec<_>>>()
    });
    Ok(Coroutine::new(async move {
        task.await
            .map_err(|err| PyValueError::new_err(err.to_string()))?
    }))
}

/// Takes `n` items of a Python async iterable through `PyAsyncIter`, then drops the stream.
#[pyfunction]
fn take_async_iter(py: Python<'_>, iterable: &Bound<'_, PyAny>, n: usize) -> PyResult<Coroutine> {
    let items = PyAsyncIter::with_capacity(&EventLoop::current(py)?, iterable, 1)?;
    Ok(Coroutine::new(async move {
        items
            .take(n)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<PyResult<Vec<_>>>()
    }))
}

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
async fn macro_count(n: u64) -> impl Stream<Item = PyResult<u64>> + Send {
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

    #[staticmethod]
    #[pyo3_async(trio)]
    async fn bank() -> &'static str {
        suspend_once().await;
        "trio bank"
    }
}

/// Like `spawn_from_tokio`, but attaching through `pyo3_async::attach_unless_exiting`: safe
/// while the process exits (the call then fails instead of aborting the process).
#[pyfunction]
fn spawn_guarded_from_tokio(py: Python<'_>, coroutine_function: Py<PyAny>) -> PyResult<Coroutine> {
    let event_loop = EventLoop::current(py)?;
    let task = tokio().spawn(async move {
        let future = pyo3_async::attach_unless_exiting(|py| {
            event_loop.spawn(&coroutine_function.bind(py).call0()?)
        })
        .unwrap_or_else(|| Err(PyValueError::new_err("exiting")))?;
        future.await
    });
    Ok(Coroutine::new(async move {
        task.await
            .map_err(|err| PyValueError::new_err(err.to_string()))?
    }))
}

/// A tokio task spawns `coroutine_function()` on the loop and drops the `PyFuture` after
/// yielding to tokio `yields` times (about a microsecond each) unless it finished: the drop
/// cancels the Python task, racing its completion. Returns whether the Python side finished
/// first.
#[pyfunction]
fn drop_after(py: Python<'_>, coroutine_function: Py<PyAny>, yields: u64) -> PyResult<Coroutine> {
    let event_loop = EventLoop::current(py)?;
    let task = tokio().spawn(async move {
        let future = event_loop.spawn_with(move |py| coroutine_function.bind(py).call0());
        tokio::select! {
            outcome = future => outcome.map(|_| true),
            () = async {
                for _ in 0..yields {
                    tokio::task::yield_now().await;
                }
            } => Ok(false),
        }
    });
    Ok(Coroutine::new(async move {
        task.await
            .map_err(|err| PyValueError::new_err(err.to_string()))?
    }))
}

/// Many futures woken at once from many threads, with spurious, repeated and late wakes.
#[pyclass(frozen)]
struct Storm {
    slots: Arc<Vec<StormSlot>>,
}

#[derive(Default)]
struct StormSlot {
    waker: Mutex<Option<Waker>>,
    fired: AtomicBool,
    polls: AtomicUsize,
    completions: AtomicUsize,
}

#[pymethods]
impl Storm {
    #[new]
    fn new(n: usize) -> Self {
        Storm {
            slots: Arc::new((0..n).map(|_| StormSlot::default()).collect()),
        }
    }

    /// Pending until slot `i` fires; returns `i`.
    #[pyo3(signature = (i, backend = None))]
    fn wait(&self, i: usize, backend: Option<&str>) -> PyResult<Coroutine> {
        if i >= self.slots.len() {
            return Err(PyValueError::new_err("no such slot"));
        }
        let slots = Arc::clone(&self.slots);
        coroutine(
            Coroutine::new(async move {
                poll_fn(|cx| {
                    let slot = &slots[i];
                    slot.polls.fetch_add(1, Ordering::SeqCst);
                    *slot.waker.lock().expect("slot lock") = Some(cx.waker().clone());
                    if slot.fired.load(Ordering::SeqCst) {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await;
                slots[i].completions.fetch_add(1, Ordering::SeqCst);
                PyResult::Ok(i)
            }),
            backend,
        )
    }

    /// From `threads` threads at once (detached, not joined): `spurious` rounds of wakes of
    /// every slot without firing it, then each thread fires every slot (starting at its own
    /// offset) and wakes it `repeats` times, then wakes everything once more after the fact.
    fn fire_from_threads(&self, threads: usize, spurious: usize, repeats: usize) {
        for t in 0..threads {
            let slots = Arc::clone(&self.slots);
            std::thread::spawn(move || {
                let wake_all = |slots: &[StormSlot]| {
                    for slot in slots {
                        let waker = slot.waker.lock().expect("slot lock").clone();
                        if let Some(waker) = waker {
                            waker.wake();
                        }
                    }
                };
                for _ in 0..spurious {
                    wake_all(&slots);
                }
                let n = slots.len();
                for k in 0..n {
                    let slot = &slots[(k + t * n / threads.max(1)) % n];
                    slot.fired.store(true, Ordering::SeqCst);
                    let waker = slot.waker.lock().expect("slot lock").clone();
                    if let Some(waker) = waker {
                        for _ in 0..repeats {
                            waker.wake_by_ref();
                        }
                    }
                }
                wake_all(&slots);
            });
        }
    }

    /// How many times each slot completed.
    fn completions(&self) -> Vec<usize> {
        self.slots
            .iter()
            .map(|slot| slot.completions.load(Ordering::SeqCst))
            .collect()
    }
}

#[pymodule]
fn pyo3_async_pytests(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ready, m)?)?;
    m.add_function(wrap_pyfunction!(panics_on_drop, m)?)?;
    m.add_function(wrap_pyfunction!(sleep, m)?)?;
    m.add_function(wrap_pyfunction!(from_thread, m)?)?;
    m.add_function(wrap_pyfunction!(tokio_noop, m)?)?;
    m.add_function(wrap_pyfunction!(yield_now, m)?)?;
    m.add_function(wrap_pyfunction!(fail, m)?)?;
    m.add_function(wrap_pyfunction!(panic, m)?)?;
    m.add_function(wrap_pyfunction!(pending_forever, m)?)?;
    m.add_function(wrap_pyfunction!(cleanup_on_cancel, m)?)?;
    m.add_function(wrap_pyfunction!(block_on_latch, m)?)?;
    m.add_function(wrap_pyfunction!(count, m)?)?;
    m.add_function(wrap_pyfunction!(count_from_tokio, m)?)?;
    m.add_function(wrap_pyfunction!(fail_after, m)?)?;
    m.add_function(wrap_pyfunction!(panic_after, m)?)?;
    m.add_function(wrap_pyfunction!(endless, m)?)?;
    m.add_function(wrap_pyfunction!(both, m)?)?;
    m.add_function(wrap_pyfunction!(await_py, m)?)?;
    m.add_function(wrap_pyfunction!(await_all, m)?)?;
    m.add_function(wrap_pyfunction!(await_in_sequence, m)?)?;
    m.add_function(wrap_pyfunction!(await_with_timeout, m)?)?;
    m.add_function(wrap_pyfunction!(await_outside_coroutine, m)?)?;
    m.add_function(wrap_pyfunction!(spawn_from_tokio, m)?)?;
    m.add_function(wrap_pyfunction!(spawn_with_from_tokio, m)?)?;
    m.add_function(wrap_pyfunction!(spawn_guarded_from_tokio, m)?)?;
    m.add_function(wrap_pyfunction!(drop_after, m)?)?;
    m.add_function(wrap_pyfunction!(collect_async_iter, m)?)?;
    m.add_function(wrap_pyfunction!(take_async_iter, m)?)?;
    m.add_function(wrap_pyfunction!(macro_sleep, m)?)?;
    m.add_function(wrap_pyfunction!(macro_add, m)?)?;
    m.add_function(wrap_pyfunction!(macro_fail, m)?)?;
    m.add_function(wrap_pyfunction!(macro_unit, m)?)?;
    m.add_function(wrap_pyfunction!(macro_trio_only, m)?)?;
    m.add_function(wrap_pyfunction!(macro_asyncio_only, m)?)?;
    m.add_function(wrap_pyfunction!(macro_block_on_latch, m)?)?;
    m.add_function(wrap_pyfunction!(macro_count, m)?)?;
    m.add_function(wrap_pyfunction!(macro_module_name, m)?)?;
    m.add_function(wrap_pyfunction!(macro_pending, m)?)?;
    m.add_class::<Account>()?;
    m.add_class::<Probe>()?;
    m.add_class::<Trigger>()?;
    m.add_class::<WakerStash>()?;
    m.add_class::<Latch>()?;
    m.add_class::<Storm>()?;
    m.add_class::<Coroutine>()?;
    m.add_class::<AsyncGenerator>()?;
    core::register(m)?;
    shutdown::register(m)?;
    with_tokio::register(m)?;
    Ok(())
}

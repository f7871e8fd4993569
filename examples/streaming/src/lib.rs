//! A Rust stream as the body of a Starlette `StreamingResponse`, served by uvicorn or hypercorn
//! and fetched by httpx (`serve.py`).
//!
//! The stream ticks on a tokio timer, polled by the server's own event loop (the `tokio`
//! option): no thread hop per chunk. When the client hangs up, the server drops the response's
//! body, so the stream and its timer are dropped with it; `on_close` reports how far it got.

use std::time::Duration;

use futures::Stream;
use pyo3::prelude::*;

#[pymodule]
fn streaming(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ticks, m)?)?;
    Ok(())
}

/// `async for line in ticks(count, period, on_close)`: `b"tick 0\n"`, `b"tick 1\n"`, ... one
/// every `period` seconds, `count` of them (or without end). `on_close(sent)` is called with
/// the number of lines sent once the stream is dropped: it ended, or its consumer let it go.
#[pyo3_async::pyfunction(generator, tokio, signature = (count = None, period = 0.01, on_close = None))]
async fn ticks(
    count: Option<u64>,
    period: f64,
    on_close: Option<Py<PyAny>>,
) -> impl Stream<Item = PyResult<Vec<u8>>> + Send {
    let period = Duration::from_secs_f64(period);
    let interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let progress = Progress { sent: 0, on_close };
    futures::stream::unfold(
        (interval, progress),
        move |(mut interval, mut progress)| async move {
            if count.is_some_and(|count| progress.sent == count) {
                return None;
            }
            interval.tick().await;
            let line = format!("tick {}\n", progress.sent).into_bytes();
            progress.sent += 1;
            Some((Ok(line), (interval, progress)))
        },
    )
}

/// How many lines the stream sent; tells `on_close` when dropped with the stream.
struct Progress {
    sent: u64,
    on_close: Option<Py<PyAny>>,
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(on_close) = self.on_close.take() {
            // The server drops the stream on its loop's thread, attached already.
            Python::attach(|py| {
                if let Err(err) = on_close.call1(py, (self.sent,)) {
                    err.write_unraisable(py, Some(on_close.bind(py)));
                }
            });
        }
    }
}

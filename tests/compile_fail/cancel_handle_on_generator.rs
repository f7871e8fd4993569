use futures::Stream;
use pyo3::prelude::*;
use pyo3_async::CancelHandle;

#[pyo3_async::pyfunction(generator)]
async fn numbers(
    #[pyo3(cancel_handle)] cancel: CancelHandle,
) -> impl Stream<Item = PyResult<u32>> + Send {
    drop(cancel);
    futures::stream::iter(vec![Ok(1)])
}

fn main() {}

use futures::Stream;
use pyo3::prelude::*;

// The import above is used: the only error is the missing option.
#[pyo3_async::pyfunction]
async fn numbers() -> impl Stream<Item = PyResult<u64>> + Send {
    futures::stream::iter([Ok(1)])
}

fn main() {}

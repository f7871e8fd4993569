use futures::Stream;
use pyo3::prelude::*;

// The stream is checked against the declared type.
#[pyo3_async::pyfunction(generator)]
async fn words() -> impl Stream<Item = PyResult<u32>> + Send {
    futures::stream::iter(vec![Ok("one".to_string())])
}

fn main() {}

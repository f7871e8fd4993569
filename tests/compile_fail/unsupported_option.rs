#[pyo3_async::pyfunction(curio)]
async fn sleep() {}

fn main() {}

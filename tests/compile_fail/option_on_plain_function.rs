#[pyo3_async::pyfunction(trio)]
fn not_async() {}

fn main() {}

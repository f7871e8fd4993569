#[pyo3_async::pyfunction]
async fn echo<T: Send + 'static>(value: T) -> T {
    value
}

#[pyo3_async::test]
async fn generic_test<T>() {}

fn main() {}

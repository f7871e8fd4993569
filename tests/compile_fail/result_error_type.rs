// An alias of `Result` whose error is no `PyErr`: reported at the return type.
struct NotAnError;

type Outcome<T> = Result<T, NotAnError>;

#[pyo3_async::pyfunction]
async fn attempt() -> Outcome<u64> {
    Err(NotAnError)
}

fn main() {}

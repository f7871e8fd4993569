#[pyo3_async::pyfunction]
async fn shout(text: &str) -> String {
    text.to_uppercase()
}

fn main() {}

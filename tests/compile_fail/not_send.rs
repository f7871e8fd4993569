use std::rc::Rc;

#[pyo3_async::pyfunction]
async fn keeps_an_rc() -> usize {
    let shared = Rc::new(1);
    std::future::ready(()).await;
    *shared
}

fn main() {}

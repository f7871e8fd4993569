use pyo3::prelude::*;
use pyo3::types::PyDict;

// A borrow inside another type is refused at the borrow, as at the top.
#[pyo3_async::pyfunction]
async fn maybe_text(text: Option<&str>) -> usize {
    text.map_or(0, str::len)
}

#[pyo3_async::pyfunction]
async fn mappings(items: Vec<Bound<'_, PyDict>>) -> usize {
    items.len()
}

fn main() {}

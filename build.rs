// Tests and doctests embed Python: link them against the interpreter pyo3 was configured for.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}

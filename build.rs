// Tests and doctests embed Python: link them against the interpreter pyo3 was configured for.
// The `Py_3_*` / `Py_LIMITED_API` cfgs gate the `am_send` slot (src/rust_to_py/send_slot.rs).
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    pyo3_build_config::add_libpython_rpath_link_args();
}

//! `#[pyo3_async::main]` in a crate without the implicit prelude (a test without the harness:
//! this file's `main` is the program), with a body returning a result under another name.
#![no_implicit_prelude]

type Outcome = ::pyo3::PyResult<()>;

#[::pyo3_async::main(trio)]
async fn main() -> Outcome {
    let answer: u64 = 42;
    ::std::assert_eq!(answer, 42);
    ::core::result::Result::Ok(())
}

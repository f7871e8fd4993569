//! Python event loops started from Rust: a program's main loop ([`run`], `#[pyo3_async::main]`),
//! a loop on a thread of its own ([`LoopThread`]), and tests run on every loop
//! (`#[pyo3_async::test]`).
//!
//! Loops are started through their framework's own entry point (`asyncio.run`, `uvloop.run`,
//! `trio.run`), so that they end as a Python program's loop does: tasks still running are
//! cancelled and awaited, async generators closed, the loop closed.

mod block_on;
mod initialize;
mod loop_kind;
mod loop_options;
mod loop_thread;
mod run;

pub use block_on::block_on;
pub use initialize::initialize_python;
pub use loop_kind::LoopKind;
pub use loop_options::LoopOptions;
pub use loop_thread::LoopThread;
pub use run::{run, run_test, run_until_complete, run_with};

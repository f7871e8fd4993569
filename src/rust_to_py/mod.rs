//! Rust → Python: Rust futures and streams as Python coroutines and async generators.

mod allow_threads;
mod async_generator;
mod cancel_handle;
mod coroutine;
mod driver;
pub(crate) mod errors;
mod future_cell;
mod label;
mod pollable;
mod send_slot;

pub use allow_threads::AllowThreads;
pub use async_generator::AsyncGenerator;
pub use cancel_handle::CancelHandle;
pub use coroutine::Coroutine;
pub use label::StaticLabel;

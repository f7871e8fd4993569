//! Rust → Python: Rust futures and streams as Python coroutines and async generators.

mod allow_threads;
mod anext_slot;
mod async_generator;
mod cancel_handle;
mod coroutine;
mod coroutine_function;
mod driver;
pub(crate) mod errors;
mod exported_types;
mod future_cell;
mod label;
pub(crate) mod macro_output;
pub(crate) mod panic;
#[cfg(feature = "tracing")]
mod poll_span;
mod pollable;
mod send_slot;
#[cfg(all(Py_3_10, Py_LIMITED_API, not(Py_GIL_DISABLED)))]
mod slot_class;
#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
mod slot_entry;
#[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
mod stop_iteration;
mod stream_slot;
mod thread_bound;

pub use allow_threads::AllowThreads;
pub use async_generator::AsyncGenerator;
pub use cancel_handle::CancelHandle;
pub use coroutine::Coroutine;
pub use coroutine_function::mark_coroutine_functions;
pub use exported_types::add_types;
pub use label::StaticLabel;
pub use panic::{panic_style, set_panic_style, PanicError, PanicStyle};
pub use thread_bound::ThreadBound;

//! The guide: how to use pyo3-async, one page per topic.
//!
//! 1. [Getting started](getting_started): an extension module built with maturin, awaited on
//!    asyncio and trio.
//! 2. [tokio and smol](tokio_and_smol): futures that need tokio's reactor, and Rust tasks
//!    that await Python.
//! 3. [Embedding](embedding): Python event loops started from Rust programs.
//! 4. [Testing](testing): Rust tests on every loop, and an extension module's pytest suite.
//! 5. [Cancellation](cancellation): what cancelling means on each loop, and cleaning up.
//! 6. [Context variables](contextvars): which `contextvars` context Rust-driven work sees.
//! 7. [trio and anyio](trio_and_anyio): backend detection, anyio, trio system tasks.
//! 8. [Migrating](migrating): from pyo3-async-runtimes and from PyO3's `experimental-async`.
//! 9. [What Python's tools see](native): the collector, "never awaited", stacks and call
//!    graphs, `inspect`.
//! 10. [Async protocols](async_protocols): `async with`, `async for` and `await` on Rust
//!     classes.
//! 11. [Observability](observability): counts of what the bridge holds, `tracing` spans.

#[doc = include_str!("../guide/getting-started.md")]
pub mod getting_started {}

#[doc = include_str!("../guide/tokio-and-smol.md")]
pub mod tokio_and_smol {}

#[doc = include_str!("../guide/embedding.md")]
pub mod embedding {}

#[doc = include_str!("../guide/testing.md")]
pub mod testing {}

#[doc = include_str!("../guide/cancellation.md")]
pub mod cancellation {}

#[doc = include_str!("../guide/contextvars.md")]
pub mod contextvars {}

#[doc = include_str!("../guide/trio-and-anyio.md")]
pub mod trio_and_anyio {}

#[doc = include_str!("../guide/migrating.md")]
pub mod migrating {}

#[doc = include_str!("../guide/native.md")]
pub mod native {}

#[doc = include_str!("../guide/async-protocols.md")]
pub mod async_protocols {}

#[doc = include_str!("../guide/observability.md")]
pub mod observability {}

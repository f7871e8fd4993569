//! Which Python event loop to start.

/// Which Python event loop to start.
///
/// ```
/// use pyo3_async::{Backend, LoopKind};
///
/// assert_eq!(LoopKind::Uvloop.backend(), Backend::Asyncio);
/// assert_eq!(LoopKind::Trio.name(), "trio");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoopKind {
    /// asyncio's default loop (`asyncio.run`).
    Asyncio,
    /// uvloop (`uvloop.run`); the `uvloop` package must be installed.
    Uvloop,
    /// A trio run (`trio.run`); the `trio` package must be installed.
    Trio,
}

impl LoopKind {
    /// Every kind, in the order tests run them.
    pub const ALL: [LoopKind; 3] = [LoopKind::Asyncio, LoopKind::Uvloop, LoopKind::Trio];

    /// The backend driving awaitables on this kind of loop.
    pub fn backend(self) -> crate::backend::Backend {
        match self {
            LoopKind::Asyncio | LoopKind::Uvloop => crate::backend::Backend::Asyncio,
            LoopKind::Trio => crate::backend::Backend::Trio,
        }
    }

    /// `"asyncio"`, `"uvloop"` or `"trio"`.
    pub fn name(self) -> &'static str {
        match self {
            LoopKind::Asyncio => "asyncio",
            LoopKind::Uvloop => "uvloop",
            LoopKind::Trio => "trio",
        }
    }
}

impl std::fmt::Display for LoopKind {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

//! Where work is started from.

/// Where work is started from (see [`Backend::start`](super::Backend::start)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A job or a task of the loop: its thread, while it runs (so it is not closed).
    InLoop,
    /// Any thread: whether it runs the loop, and whether the loop is open, is found out.
    Anywhere,
}

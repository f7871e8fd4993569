//! The parts of a driver that most coroutines never use, boxed at their first use.
//!
//! A delegated awaitable, a cancel handle and a `cr_frame` are each a minority's: kept inline,
//! they would cost every suspended coroutine 32 bytes (24 of fields, and the allocator's next
//! size class), which is what a pending exported future is measured by (M1). Boxed, the
//! coroutines that use one pay an allocation once, and keep the box for their life.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::delegation::Delegate;
use crate::rust_to_py::cancel_handle::Cancellation;

/// A driver's rarely used parts: none until one is set.
#[derive(Default)]
pub(super) struct Rare(Option<Box<Parts>>);

#[derive(Default)]
struct Parts {
    /// A Python awaitable the future awaits, run inside this coroutine's task.
    delegate: Option<Delegate>,
    cancellation: Option<Arc<Cancellation>>,
    /// The never-run generator whose frame is `cr_frame`, made when first asked for.
    frame_owner: Option<Py<PyAny>>,
}

impl Rare {
    #[inline]
    pub(super) fn with_cancellation(cancellation: Option<Arc<Cancellation>>) -> Self {
        Rare(cancellation.map(|cancellation| {
            Box::new(Parts {
                cancellation: Some(cancellation),
                ..Parts::default()
            })
        }))
    }

    /// The parts, boxed now if they were not.
    fn parts(&mut self) -> &mut Parts {
        self.0.get_or_insert_with(Box::default)
    }

    pub(super) fn delegate(&self) -> Option<&Delegate> {
        self.0.as_ref()?.delegate.as_ref()
    }

    pub(super) fn has_delegate(&self) -> bool {
        self.delegate().is_some()
    }

    pub(super) fn take_delegate(&mut self) -> Option<Delegate> {
        self.0.as_mut()?.delegate.take()
    }

    pub(super) fn set_delegate(&mut self, delegate: Option<Delegate>) {
        if delegate.is_some() || self.0.is_some() {
            self.parts().delegate = delegate;
        }
    }

    pub(super) fn cancellation(&self) -> Option<&Arc<Cancellation>> {
        self.0.as_ref()?.cancellation.as_ref()
    }

    pub(super) fn frame_owner(&self) -> Option<&Py<PyAny>> {
        self.0.as_ref()?.frame_owner.as_ref()
    }

    pub(super) fn set_frame_owner(&mut self, owner: Option<Py<PyAny>>) {
        if owner.is_some() || self.0.is_some() {
            self.parts().frame_owner = owner;
        }
    }
}

//! A coroutine's name and source (for reprs and tracebacks), in one word of the coroutine.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::ptr::NonNull;

/// The name and source of an exported function, in a static that the attribute macros emit:
/// every coroutine of the function points at it instead of carrying its own copy.
#[doc(hidden)]
pub struct StaticLabel {
    pub qualname: &'static str,
    pub file: &'static str,
    pub line: u32,
}

/// What a coroutine knows of the Rust function it runs: the static label of an exported
/// function, or one set by hand (`with_qualname`, `with_source`: rare, so boxed).
///
/// One word, where an enum of the two references takes two: a coroutine object's fields then
/// fit the 64-byte size class (its driver's reference and this), not the 80-byte one. Both
/// kinds are pointers to 8-byte aligned structs, so the lowest bit is free to tell which this
/// is: set for the boxed kind.
pub(crate) struct Label {
    tagged: NonNull<u8>,
    /// Owns the box of the boxed kind (for drop check, `Send` and `Sync`).
    _owns: PhantomData<Box<OwnedLabel>>,
}

/// The two kinds a [`Label`] points to.
enum Kind<'a> {
    Static(&'static StaticLabel),
    Owned(&'a OwnedLabel),
}

pub(crate) struct OwnedLabel {
    qualname: Option<Cow<'static, str>>,
    source: Option<(&'static str, u32)>,
}

const OWNED: usize = 1;

// Both referents are at least 2-byte aligned, so the tag bit is never part of an address.
const _: () = assert!(align_of::<StaticLabel>() > OWNED && align_of::<OwnedLabel>() > OWNED);

// SAFETY: a `Label` is a `&'static StaticLabel` or a `Box<OwnedLabel>`, both `Send` and `Sync`
// (their contents are plain strings and numbers); it never hands out the box mutably.
unsafe impl Send for Label {}
// SAFETY: as above.
unsafe impl Sync for Label {}

impl Label {
    pub(crate) fn from_static(label: &'static StaticLabel) -> Self {
        Label {
            tagged: NonNull::from(label).cast(),
            _owns: PhantomData,
        }
    }

    fn from_owned(label: Box<OwnedLabel>) -> Self {
        let pointer = NonNull::from(Box::leak(label)).cast::<u8>();
        Label {
            // The address keeps its provenance; only the (free) lowest bit changes.
            tagged: pointer.map_addr(|address| address | OWNED),
            _owns: PhantomData,
        }
    }

    fn kind(&self) -> Kind<'_> {
        let address = self.tagged.addr().get();
        if address & OWNED == 0 {
            // SAFETY: untagged, the pointer came from a `&'static StaticLabel`
            // (`from_static`).
            Kind::Static(unsafe { self.tagged.cast::<StaticLabel>().as_ref() })
        } else {
            let pointer = self.untagged();
            // SAFETY: tagged, the pointer is the box of `from_owned`, owned by this label and
            // freed only by its drop; the reference lives no longer than `&self`.
            Kind::Owned(unsafe { pointer.as_ref() })
        }
    }

    /// The boxed kind's pointer, tag cleared.
    fn untagged(&self) -> NonNull<OwnedLabel> {
        self.tagged
            .map_addr(|address| {
                // Cleared, the tag leaves the box's own address, which is never zero (the
                // fallback is unreachable).
                std::num::NonZeroUsize::new(address.get() & !OWNED).unwrap_or(address)
            })
            .cast()
    }

    /// The boxed kind, taken out of the label (a copy of a static one).
    fn into_owned(self) -> OwnedLabel {
        let owned = match self.kind() {
            Kind::Static(label) => OwnedLabel {
                qualname: Some(Cow::Borrowed(label.qualname)),
                source: Some((label.file, label.line)),
            },
            Kind::Owned(_) => {
                let label = std::mem::ManuallyDrop::new(self);
                // SAFETY: tagged, the pointer is `from_owned`'s box; `ManuallyDrop` keeps the
                // label's drop from freeing it a second time.
                return *unsafe { Box::from_raw(label.untagged().as_ptr()) };
            }
        };
        owned
    }

    pub(crate) fn qualname(&self) -> Option<&str> {
        match self.kind() {
            Kind::Static(label) => Some(label.qualname),
            Kind::Owned(label) => label.qualname.as_deref(),
        }
    }

    pub(crate) fn source(&self) -> Option<(&'static str, u32)> {
        match self.kind() {
            Kind::Static(label) => Some((label.file, label.line)),
            Kind::Owned(label) => label.source,
        }
    }

    /// `__qualname__` of an object labelled `label`: its qualname, else `default` (the type's
    /// name).
    pub(crate) fn qualname_or<'a>(label: Option<&'a Label>, default: &'a str) -> &'a str {
        label.and_then(Label::qualname).unwrap_or(default)
    }

    /// `__name__`: the qualname's part after its last dot.
    pub(crate) fn name_of(qualname: &str) -> &str {
        qualname.rsplit('.').next().unwrap_or(qualname)
    }

    /// `label` with the given qualname, or source, replaced.
    pub(crate) fn with(
        label: Option<Label>,
        qualname: Option<Cow<'static, str>>,
        source: Option<(&'static str, u32)>,
    ) -> Label {
        let mut owned = match label {
            None => OwnedLabel {
                qualname: None,
                source: None,
            },
            Some(label) => label.into_owned(),
        };
        if qualname.is_some() {
            owned.qualname = qualname;
        }
        if source.is_some() {
            owned.source = source;
        }
        Label::from_owned(Box::new(owned))
    }
}

impl Drop for Label {
    fn drop(&mut self) {
        if let Kind::Owned(_) = self.kind() {
            // SAFETY: tagged, the pointer is `from_owned`'s box, owned by this label alone.
            drop(unsafe { Box::from_raw(self.untagged().as_ptr()) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static LABEL: StaticLabel = StaticLabel {
        qualname: "Client.fetch",
        file: "src/client.rs",
        line: 7,
    };

    #[test]
    fn a_label_is_one_word_and_an_absent_one_costs_nothing_more() {
        assert_eq!(size_of::<Option<Label>>(), size_of::<usize>());
    }

    #[test]
    fn both_kinds_read_back_and_the_boxed_kind_is_freed_once() {
        let label = Label::from_static(&LABEL);
        assert_eq!(label.qualname(), Some("Client.fetch"));
        assert_eq!(label.source(), Some(("src/client.rs", 7)));
        let renamed = Label::with(Some(label), Some("Client.get".into()), None);
        assert_eq!(renamed.qualname(), Some("Client.get"));
        assert_eq!(renamed.source(), Some(("src/client.rs", 7)));
        let moved = Label::with(Some(renamed), None, Some(("src/lib.rs", 1)));
        assert_eq!(moved.qualname(), Some("Client.get"));
        assert_eq!(moved.source(), Some(("src/lib.rs", 1)));
        let fresh = Label::with(None, Some(String::from("made").into()), None);
        assert_eq!((fresh.qualname(), fresh.source()), (Some("made"), None));
    }
}

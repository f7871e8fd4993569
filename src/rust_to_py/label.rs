//! A coroutine's name and source (for reprs and tracebacks), in one word of the coroutine,
//! which also carries the coroutine object's two flags ([`MarkedLabel`]).

use std::borrow::Cow;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

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
// Both referents are 8-byte aligned, so the three low bits (the tag, and [`MarkedLabel`]'s
// two flags) are never part of an address.
const _: () = assert!(align_of::<StaticLabel>() >= 8 && align_of::<OwnedLabel>() >= 8);

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
        // SAFETY: the pointer is this label's own, alive while `&self` is.
        unsafe { kind_of(self.tagged) }
    }

    /// The label as an integer (its address exposed, tag included), owning what it owned.
    fn into_word(self) -> usize {
        let label = ManuallyDrop::new(self);
        label.tagged.as_ptr().expose_provenance()
    }

    /// The label a nonzero [`into_word`](Label::into_word) made.
    ///
    /// # Safety
    /// `word` came from `into_word` and owns its label: no other label is made from it.
    unsafe fn from_word(word: usize) -> Option<Label> {
        NonNull::new(std::ptr::with_exposed_provenance_mut::<u8>(word)).map(|tagged| Label {
            tagged,
            _owns: PhantomData,
        })
    }

    /// The boxed kind's pointer, tag cleared.
    fn untagged(&self) -> NonNull<OwnedLabel> {
        untagged(self.tagged)
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

/// The boxed kind's pointer in `tagged`, tag cleared.
fn untagged(tagged: NonNull<u8>) -> NonNull<OwnedLabel> {
    tagged
        .map_addr(|address| {
            // Cleared, the tag leaves the box's own address, which is never zero (the fallback
            // is unreachable).
            std::num::NonZeroUsize::new(address.get() & !OWNED).unwrap_or(address)
        })
        .cast()
}

/// What the label pointer `tagged` points to.
///
/// # Safety
/// `tagged` is a [`Label`]'s pointer, and that label outlives `'a`.
unsafe fn kind_of<'a>(tagged: NonNull<u8>) -> Kind<'a> {
    if tagged.addr().get() & OWNED == 0 {
        // SAFETY: untagged, the pointer came from a `&'static StaticLabel` (`from_static`).
        Kind::Static(unsafe { tagged.cast::<StaticLabel>().as_ref() })
    } else {
        // SAFETY: tagged, the pointer is the box of `from_owned`, freed only when its label
        // goes, which the caller promises is after `'a`.
        Kind::Owned(unsafe { untagged(tagged).as_ref() })
    }
}

/// A coroutine object's label and its two flags in one atomic word: the fields of a
/// coroutine object then fit the 64-byte size class, and the flags are read and set without
/// the driver (an `await` checks one; the destructor reads both).
///
/// | bits | meaning | changed |
/// |---|---|---|
/// | address and bit 0 | the [`Label`] (zero: none) | with `&mut` only, while Rust code builds the coroutine |
/// | bit 1, `CLAIMED` | `__await__` was called, or the coroutine started | once, through `&self` |
/// | bit 2, `RAN` | the coroutine started or was closed (spares the "never awaited" warning) | once, through `&self` |
///
/// A closed coroutine is not claimed: as with a native one, `__await__` still succeeds and
/// its first step raises.
///
/// Invariant: the label bits never change while the object is shared, so a reference into
/// the label lives as long as `&self`.
pub(crate) struct MarkedLabel {
    word: AtomicUsize,
    /// Owns the label's box, if it has one.
    _owns: PhantomData<Box<OwnedLabel>>,
}

const CLAIMED: usize = 0b010;
const RAN: usize = 0b100;
const FLAGS: usize = CLAIMED | RAN;

impl MarkedLabel {
    pub(crate) fn new() -> Self {
        MarkedLabel {
            word: AtomicUsize::new(0),
            _owns: PhantomData,
        }
    }

    /// Takes the label out, keeping the flags.
    pub(crate) fn take(&mut self) -> Option<Label> {
        let word = self.word.get_mut();
        let label = *word & !FLAGS;
        *word &= FLAGS;
        // SAFETY: the label bits came from `into_word` (`set`), and are cleared here: the
        // label made is their only owner.
        unsafe { Label::from_word(label) }
    }

    /// Sets the label, dropping the one it had.
    pub(crate) fn set(&mut self, label: Label) {
        drop(self.take());
        *self.word.get_mut() |= label.into_word();
    }

    /// The label's pointer, for as long as `&self` (see the invariant).
    fn kind(&self) -> Option<Kind<'_>> {
        let word = self.word.load(Ordering::Relaxed) & !FLAGS;
        let tagged = NonNull::new(std::ptr::with_exposed_provenance_mut::<u8>(word))?;
        // SAFETY: the label bits are a label's word (`set`), owned by this field and unchanged
        // while `&self` lives (the invariant).
        Some(unsafe { kind_of(tagged) })
    }

    pub(crate) fn qualname(&self) -> Option<&str> {
        match self.kind()? {
            Kind::Static(label) => Some(label.qualname),
            Kind::Owned(label) => label.qualname.as_deref(),
        }
    }

    pub(crate) fn source(&self) -> Option<(&'static str, u32)> {
        match self.kind()? {
            Kind::Static(label) => Some((label.file, label.line)),
            Kind::Owned(label) => label.source,
        }
    }

    /// Marks the coroutine awaited; false if it was awaited, or started, already.
    pub(crate) fn claim(&self) -> bool {
        if self.word.load(Ordering::Relaxed) & CLAIMED != 0 {
            return false;
        }
        self.mark(CLAIMED) & CLAIMED == 0
    }

    /// Marks the coroutine started (claimed with it).
    pub(crate) fn set_started(&self) {
        if self.word.load(Ordering::Relaxed) & FLAGS != FLAGS {
            self.mark(FLAGS);
        }
    }

    /// Marks the coroutine closed.
    pub(crate) fn set_closed(&self) {
        self.mark(RAN);
    }

    /// Sets `flags`, returning the word before. Every caller is attached: with the GIL, no two
    /// run at once, so a load and a store do, without the atomic read-modify-write that costs
    /// an `await` a locked instruction each time (S1 ran 6 to 13 % slower with two).
    #[cfg(not(Py_GIL_DISABLED))]
    fn mark(&self, flags: usize) -> usize {
        let word = self.word.load(Ordering::Relaxed);
        self.word.store(word | flags, Ordering::Relaxed);
        word
    }

    /// Free-threaded, attached threads run at once: an atomic read-modify-write keeps both
    /// flags when two set theirs together.
    #[cfg(Py_GIL_DISABLED)]
    fn mark(&self, flags: usize) -> usize {
        self.word.fetch_or(flags, Ordering::Relaxed)
    }

    /// Whether the coroutine started or was closed.
    pub(crate) fn ran(&self) -> bool {
        self.word.load(Ordering::Relaxed) & RAN != 0
    }
}

impl Drop for MarkedLabel {
    fn drop(&mut self) {
        drop(self.take());
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
    fn a_marked_label_keeps_its_flags_through_every_label() {
        let mut marked = MarkedLabel::new();
        assert_eq!(size_of::<MarkedLabel>(), size_of::<usize>());
        assert_eq!((marked.qualname(), marked.ran()), (None, false));
        assert!(marked.claim());
        assert!(!marked.claim(), "claimed once");
        marked.set(Label::from_static(&LABEL));
        assert_eq!(marked.qualname(), Some("Client.fetch"));
        let renamed = Label::with(marked.take(), Some("Client.get".into()), None);
        marked.set(renamed);
        marked.set_started();
        assert_eq!(marked.qualname(), Some("Client.get"));
        assert_eq!(marked.source(), Some(("src/client.rs", 7)));
        assert!(marked.ran() && !marked.claim());
        marked.set(Label::with(None, Some(String::from("again").into()), None));
        assert_eq!((marked.qualname(), marked.source()), (Some("again"), None));
        assert!(marked.ran(), "flags survive a new label");
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

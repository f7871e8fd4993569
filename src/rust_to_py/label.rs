//! A coroutine's name and source (for reprs and tracebacks), in two words of the coroutine.

use std::borrow::Cow;

/// The name and source of an exported function, in a static that the attribute macros emit:
/// every coroutine of the function points at it instead of carrying its own copy.
#[doc(hidden)]
pub struct StaticLabel {
    pub qualname: &'static str,
    pub file: &'static str,
    pub line: u32,
}

/// What a coroutine knows of the Rust function it runs.
pub(crate) enum Label {
    Static(&'static StaticLabel),
    /// Set by hand (`with_qualname`, `with_source`): rare, so boxed.
    Owned(Box<OwnedLabel>),
}

pub(crate) struct OwnedLabel {
    qualname: Option<Cow<'static, str>>,
    source: Option<(&'static str, u32)>,
}

impl Label {
    pub(crate) fn qualname(&self) -> Option<&str> {
        match self {
            Label::Static(label) => Some(label.qualname),
            Label::Owned(label) => label.qualname.as_deref(),
        }
    }

    pub(crate) fn source(&self) -> Option<(&'static str, u32)> {
        match self {
            Label::Static(label) => Some((label.file, label.line)),
            Label::Owned(label) => label.source,
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
            Some(Label::Static(label)) => OwnedLabel {
                qualname: Some(Cow::Borrowed(label.qualname)),
                source: Some((label.file, label.line)),
            },
            Some(Label::Owned(label)) => *label,
        };
        if qualname.is_some() {
            owned.qualname = qualname;
        }
        if source.is_some() {
            owned.source = source;
        }
        Label::Owned(Box::new(owned))
    }
}

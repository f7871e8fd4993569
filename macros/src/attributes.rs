//! Where each attribute of an exported `async fn` goes: the macros split one function in two,
//! a wrapper that Python calls (and that returns the coroutine) and the body the user wrote
//! (which becomes the coroutine's future).
//!
//! | attribute | wrapper | body | why |
//! |---|---|---|---|
//! | PyO3's (`pyo3`, `new`, `getter`, `staticmethod`...), `doc`, `deprecated`, `must_use`, a test's `ignore`, `should_panic` | yes | no | they describe what the caller sees |
//! | `cfg`, `allow`, `warn`, `deny`, `forbid` | yes | yes | both halves exist together, and share the signature lints are about |
//! | `expect`, body nested in the wrapper (functions, tests, `main`) | yes | (inherited) | one scope covers both halves: the expectation is met wherever the lint fires |
//! | `expect`, body beside the wrapper (methods) | as `allow` | as `allow` | two scopes, and the lint may fire in either (`missing_docs` on the wrapper, `unused_variables` in the body): an expectation on both would go unfulfilled in one |
//! | `cfg_attr(p, a, b)` | the `a`, `b` that go there | the `a`, `b` that go there | split by the same rules, under the same `p` |
//! | anything else (`tracing::instrument`, `inline`...) | no | yes | an attribute macro on an `async fn` is about its body: a span must cover the code that runs when awaited, not the call that creates the coroutine |
//!
//! A body beside its wrapper has a generated name; an `instrument` attribute without a `name`
//! is given the written one, so that the span is named as on any `async fn`.

use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::{Attribute, Meta, Token};

/// PyO3's attributes on a method (and ours): they mean something to PyO3's macros only.
pub(crate) const PYO3: &[&str] = &[
    "pyo3",
    "pyo3_async",
    "new",
    "getter",
    "setter",
    "classmethod",
    "staticmethod",
    "classattr",
];

/// Attributes about what the caller sees, besides PyO3's.
const CALLERS: &[&str] = &["doc", "deprecated", "must_use", "ignore", "should_panic"];

/// Attributes that both halves need.
const BOTH: &[&str] = &["cfg", "allow", "warn", "deny", "forbid"];

/// Where the body is: inside the wrapper (a nested `fn`, which inherits the wrapper's lint
/// levels), or beside it (a method of a hidden `impl`, with a generated name).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    Nested,
    /// Beside the wrapper; the written name, for `instrument`.
    Beside,
}

/// Where one attribute (or one attribute inside a `cfg_attr`) goes.
enum Place {
    Wrapper,
    Body,
    Both,
    /// `expect(..)`: see the table.
    Expect,
}

fn place(meta: &Meta) -> Place {
    let path = meta.path();
    let is = |names: &[&str]| names.iter().any(|name| path.is_ident(name));
    if is(PYO3) || is(CALLERS) {
        Place::Wrapper
    } else if is(BOTH) {
        Place::Both
    } else if path.is_ident("expect") {
        Place::Expect
    } else {
        Place::Body
    }
}

/// The attributes split between the wrapper and the body.
#[derive(Default)]
pub(crate) struct Split {
    pub(crate) wrapper: Vec<TokenStream2>,
    pub(crate) body: Vec<TokenStream2>,
}

pub(crate) fn split(attrs: &[Attribute], body: Body, name: &syn::Ident) -> syn::Result<Split> {
    let mut split = Split::default();
    for attr in attrs {
        if attr.path().is_ident("cfg_attr") {
            let (condition, inner) = attr.parse_args_with(cfg_attr_arguments)?;
            if let Some(ours) = inner.iter().find(|meta| meta.path().is_ident("pyo3_async")) {
                return Err(syn::Error::new_spanned(
                    ours.path(),
                    "`#[pyo3_async(..)]` options cannot be under `cfg_attr`: the macro reads \
                     them as written; write the method twice, under `#[cfg(..)]` and \
                     `#[cfg(not(..))]`",
                ));
            }
            let (wrapper, inside) = place_all(inner.iter(), body, name);
            if !wrapper.is_empty() {
                split
                    .wrapper
                    .push(quote!(#[cfg_attr(#condition, #(#wrapper),*)]));
            }
            if !inside.is_empty() {
                split
                    .body
                    .push(quote!(#[cfg_attr(#condition, #(#inside),*)]));
            }
        } else {
            let (wrapper, inside) = place_all(std::iter::once(&attr.meta), body, name);
            split
                .wrapper
                .extend(wrapper.into_iter().map(|meta| quote!(#[#meta])));
            split
                .body
                .extend(inside.into_iter().map(|meta| quote!(#[#meta])));
        }
    }
    Ok(split)
}

/// The metas for the wrapper and for the body, in order.
fn place_all<'a>(
    metas: impl Iterator<Item = &'a Meta>,
    body: Body,
    name: &syn::Ident,
) -> (Vec<TokenStream2>, Vec<TokenStream2>) {
    let mut wrapper = Vec::new();
    let mut inside = Vec::new();
    for meta in metas {
        match (place(meta), body) {
            (Place::Wrapper, _) => wrapper.push(quote!(#meta)),
            (Place::Body, Body::Beside) => inside.push(named_instrument(meta, name)),
            (Place::Body, Body::Nested) => inside.push(quote!(#meta)),
            (Place::Both, _) => {
                wrapper.push(quote!(#meta));
                inside.push(quote!(#meta));
            }
            (Place::Expect, Body::Nested) => wrapper.push(quote!(#meta)),
            (Place::Expect, Body::Beside) => {
                if let Meta::List(list) = meta {
                    let lints = &list.tokens;
                    wrapper.push(quote!(allow(#lints)));
                    inside.push(quote!(allow(#lints)));
                }
            }
        }
    }
    (wrapper, inside)
}

/// `instrument` (`tracing::instrument`, or imported) without a `name`: given the written one,
/// which the body beside its wrapper no longer has.
fn named_instrument(meta: &Meta, name: &syn::Ident) -> TokenStream2 {
    let is_instrument = meta
        .path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "instrument");
    if !is_instrument {
        return quote!(#meta);
    }
    let name = syn::ext::IdentExt::unraw(name).to_string();
    match meta {
        Meta::Path(path) => quote!(#path(name = #name)),
        Meta::List(list) => {
            let named = list.tokens.clone().into_iter().any(
                |token| matches!(&token, proc_macro2::TokenTree::Ident(ident) if ident == "name"),
            );
            if named {
                quote!(#meta)
            } else {
                let path = &list.path;
                let tokens = &list.tokens;
                quote!(#path(name = #name, #tokens))
            }
        }
        Meta::NameValue(_) => quote!(#meta),
    }
}

/// `cfg_attr(condition, a, b, ..)`: the condition, then the attributes.
fn cfg_attr_arguments(input: ParseStream<'_>) -> syn::Result<(Meta, Vec<Meta>)> {
    let condition: Meta = input.parse()?;
    input.parse::<Token![,]>()?;
    let inner = Punctuated::<Meta, Token![,]>::parse_terminated(input)?;
    Ok((condition, inner.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::{split, Body};

    fn shown(tokens: &[proc_macro2::TokenStream]) -> Vec<String> {
        tokens.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn each_attribute_goes_where_its_table_row_says() {
        let function: syn::ItemFn = syn::parse_quote! {
            /// Docs.
            #[pyo3(name = "x")]
            #[tracing::instrument(skip(self))]
            #[cfg(feature = "extra")]
            #[expect(unused_variables)]
            #[cfg_attr(feature = "trace", tracing::instrument, allow(dead_code), pyo3(name = "y"))]
            async fn f() {}
        };
        let name: syn::Ident = syn::parse_quote!(r#f);
        let beside = split(&function.attrs, Body::Beside, &name).unwrap();
        assert_eq!(
            shown(&beside.wrapper),
            [
                "# [doc = r\" Docs.\"]",
                "# [pyo3 (name = \"x\")]",
                "# [cfg (feature = \"extra\")]",
                "# [allow (unused_variables)]",
                "# [cfg_attr (feature = \"trace\" , allow (dead_code) , pyo3 (name = \"y\"))]",
            ]
        );
        assert_eq!(
            shown(&beside.body),
            [
                "# [tracing :: instrument (name = \"f\" , skip (self))]",
                "# [cfg (feature = \"extra\")]",
                "# [allow (unused_variables)]",
                "# [cfg_attr (feature = \"trace\" , tracing :: instrument (name = \"f\") , allow (dead_code))]",
            ]
        );
        // Nested, the body keeps its name, and `expect` covers both halves from the wrapper.
        let nested = split(&function.attrs, Body::Nested, &name).unwrap();
        assert!(shown(&nested.wrapper).contains(&"# [expect (unused_variables)]".to_owned()));
        assert_eq!(
            shown(&nested.body)[0],
            "# [tracing :: instrument (skip (self))]"
        );
    }
}

//! Where each attribute of an exported `async fn` goes: the macros split one function in two,
//! a wrapper that Python calls (and that returns the coroutine) and the body the user wrote
//! (which becomes the coroutine's future).
//!
//! | attribute | wrapper | body | why |
//! |---|---|---|---|
//! | PyO3's (`pyo3`, `new`, `getter`, `staticmethod`...), `doc`, `deprecated`, `must_use`, a test's `ignore`, `should_panic` | yes | no | they describe what the caller sees |
//! | `cfg`, `allow`, `warn`, `deny`, `forbid` | yes | yes | both halves exist together, and share the signature lints are about |
//! | `expect` | as `allow` | yes | an expectation is about the code written; on the wrapper it would go unfulfilled |
//! | `cfg_attr(p, a, b)` | the `a`, `b` that go there | the `a`, `b` that go there | split by the same rules, under the same `p` |
//! | anything else (`tracing::instrument`, `inline`...) | no | yes | an attribute macro on an `async fn` is about its body: a span must cover the code that runs when awaited, not the call that creates the coroutine |

use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::{Attribute, Meta, Token};

/// Attributes about what the caller sees.
const WRAPPER_ONLY: &[&str] = &[
    "pyo3",
    "new",
    "getter",
    "setter",
    "classmethod",
    "staticmethod",
    "classattr",
    "doc",
    "deprecated",
    "must_use",
    "ignore",
    "should_panic",
];

/// Attributes that both halves need.
const BOTH: &[&str] = &["cfg", "allow", "warn", "deny", "forbid"];

/// Where one attribute (or one attribute inside a `cfg_attr`) goes.
enum Place {
    Wrapper,
    Body,
    Both,
    /// `expect(..)`: `allow(..)` on the wrapper, as written on the body.
    Expect,
}

fn place(meta: &Meta) -> Place {
    let path = meta.path();
    let is = |names: &[&str]| names.iter().any(|name| path.is_ident(name));
    if is(WRAPPER_ONLY) {
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

pub(crate) fn split(attrs: &[Attribute]) -> syn::Result<Split> {
    let mut split = Split::default();
    for attr in attrs {
        if attr.path().is_ident("cfg_attr") {
            let (condition, inner) = attr.parse_args_with(cfg_attr_arguments)?;
            let (wrapper, body) = place_all(inner.iter());
            if !wrapper.is_empty() {
                split
                    .wrapper
                    .push(quote!(#[cfg_attr(#condition, #(#wrapper),*)]));
            }
            if !body.is_empty() {
                split.body.push(quote!(#[cfg_attr(#condition, #(#body),*)]));
            }
        } else {
            let (wrapper, body) = place_all(std::iter::once(&attr.meta));
            split
                .wrapper
                .extend(wrapper.into_iter().map(|meta| quote!(#[#meta])));
            split
                .body
                .extend(body.into_iter().map(|meta| quote!(#[#meta])));
        }
    }
    Ok(split)
}

/// The metas for the wrapper and for the body, in order.
fn place_all<'a>(metas: impl Iterator<Item = &'a Meta>) -> (Vec<TokenStream2>, Vec<TokenStream2>) {
    let mut wrapper = Vec::new();
    let mut body = Vec::new();
    for meta in metas {
        match place(meta) {
            Place::Wrapper => wrapper.push(quote!(#meta)),
            Place::Body => body.push(quote!(#meta)),
            Place::Both => {
                wrapper.push(quote!(#meta));
                body.push(quote!(#meta));
            }
            Place::Expect => {
                if let Meta::List(list) = meta {
                    let lints = &list.tokens;
                    wrapper.push(quote!(allow(#lints)));
                }
                body.push(quote!(#meta));
            }
        }
    }
    (wrapper, body)
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
    use super::split;

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
        let split = split(&function.attrs).unwrap();
        assert_eq!(
            shown(&split.wrapper),
            [
                "# [doc = r\" Docs.\"]",
                "# [pyo3 (name = \"x\")]",
                "# [cfg (feature = \"extra\")]",
                "# [allow (unused_variables)]",
                "# [cfg_attr (feature = \"trace\" , allow (dead_code) , pyo3 (name = \"y\"))]",
            ]
        );
        assert_eq!(
            shown(&split.body),
            [
                "# [tracing :: instrument (skip (self))]",
                "# [cfg (feature = \"extra\")]",
                "# [expect (unused_variables)]",
                "# [cfg_attr (feature = \"trace\" , tracing :: instrument , allow (dead_code))]",
            ]
        );
    }
}

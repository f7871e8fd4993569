//! Entry points that start a Python event loop: `#[pyo3_async::main]` and
//! `#[pyo3_async::test]`.

use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Error, Ident, ItemFn, ReturnType, Token};

use crate::awaitable::returns_result;

/// How many loops an attribute takes.
pub(crate) enum Expect {
    /// `main`: one, asyncio by default.
    One,
    /// `test`: any, every kind by default.
    Many,
}

const KINDS: [&str; 3] = ["asyncio", "uvloop", "trio"];

/// The loop kinds named in the attribute's arguments.
pub(crate) fn loops(args: TokenStream2, expect: Expect) -> syn::Result<Vec<Ident>> {
    let named = Punctuated::<Ident, Token![,]>::parse_terminated.parse2(args)?;
    for kind in &named {
        if !KINDS.contains(&kind.to_string().as_str()) {
            return Err(Error::new(
                kind.span(),
                "expected a loop: `asyncio`, `uvloop` or `trio`",
            ));
        }
    }
    let mut named: Vec<Ident> = named.into_iter().collect();
    match expect {
        Expect::One if named.len() > 1 => Err(Error::new(
            named[1].span(),
            "`main` runs on one loop: `asyncio`, `uvloop` or `trio`",
        )),
        Expect::One if named.is_empty() => Ok(vec![format_ident!("asyncio")]),
        Expect::Many if named.is_empty() => {
            named = KINDS.iter().map(|kind| format_ident!("{kind}")).collect();
            Ok(named)
        }
        _ => Ok(named),
    }
}

/// `::pyo3_async::LoopKind::Trio` for `trio`.
fn loop_kind(kind: &Ident) -> TokenStream2 {
    let variant = match kind.to_string().as_str() {
        "uvloop" => format_ident!("Uvloop", span = kind.span()),
        "trio" => format_ident!("Trio", span = kind.span()),
        _ => format_ident!("Asyncio", span = kind.span()),
    };
    quote!(::pyo3_async::LoopKind::#variant)
}

/// The body as a `PyResult<()>` future: it may return `()`, or a `Result` whose error converts
/// into a `PyErr` (its value is dropped).
fn body_future(function: &ItemFn, what: &str) -> syn::Result<TokenStream2> {
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        return Err(Error::new(
            sig.fn_token.span(),
            format!("`#[pyo3_async::{what}]` goes on an `async fn`"),
        ));
    }
    if let Some(input) = sig.inputs.first() {
        return Err(Error::new(
            input.span(),
            format!("`#[pyo3_async::{what}]` functions take no arguments"),
        ));
    }
    crate::options::refuse_generics(&sig.generics, &format!("`#[pyo3_async::{what}]` functions"))?;
    let body = &function.block;
    Ok(match &sig.output {
        ReturnType::Default => quote! {
            async move {
                (async move #body).await;
                ::pyo3::PyResult::Ok(())
            }
        },
        ReturnType::Type(_, ty) if returns_result(ty) => quote_spanned! {ty.span()=>
            async move {
                ::pyo3_async::__private::into_py_result(
                    ::pyo3_async::__private::with_output::<#ty, _>(async move #body).await,
                )
                .map(drop)
            }
        },
        ReturnType::Type(_, ty) => {
            return Err(Error::new(
                ty.span(),
                "return `()` or a `Result` (`PyResult<()>`)",
            ))
        }
    })
}

pub(crate) fn expand_main(loops: Vec<Ident>, function: ItemFn) -> syn::Result<TokenStream2> {
    let future = body_future(&function, "main")?;
    let kind = loop_kind(&loops[0]);
    let attrs = &function.attrs;
    let vis = &function.vis;
    let ident = &function.sig.ident;
    Ok(quote! {
        #(#attrs)*
        #vis fn #ident() {
            ::pyo3::Python::initialize();
            let ran = ::pyo3::Python::attach(|py| ::pyo3_async::run(py, #kind, #future));
            if let ::core::result::Result::Err(err) = ran {
                // As Python ends a program that raised: the traceback, exit status 1.
                ::pyo3::Python::attach(|py| err.print(py));
                ::std::process::exit(1);
            }
        }
    })
}

pub(crate) fn expand_test(loops: Vec<Ident>, function: ItemFn) -> syn::Result<TokenStream2> {
    let future = body_future(&function, "test")?;
    let (docs, attrs): (Vec<_>, Vec<_>) = function
        .attrs
        .iter()
        .partition(|attr| attr.path().is_ident("doc"));
    let vis = &function.vis;
    let ident = &function.sig.ident;
    let tests = loops.iter().map(|kind| {
        let loop_kind = loop_kind(kind);
        quote! {
            #[test]
            #(#attrs)*
            fn #kind() {
                ::pyo3_async::__private::run_test(#loop_kind, body());
            }
        }
    });
    Ok(quote! {
        #(#docs)*
        #vis mod #ident {
            #[allow(unused_imports)]
            use super::*;

            pub(super) fn body() -> impl ::core::future::Future<Output = ::pyo3::PyResult<()>> + Send + 'static {
                #future
            }

            #(#tests)*
        }
    })
}

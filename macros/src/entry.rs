//! Entry points that start a Python event loop: `#[pyo3_async::main]` and
//! `#[pyo3_async::test]`.

use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Error, Ident, ItemFn, ReturnType, Token};

use crate::attributes::Body;

/// How many loops an attribute takes.
pub(crate) enum Expect {
    /// `main`: one, asyncio by default.
    One,
    /// `test`: any, every kind by default.
    Many,
}

const KINDS: [&str; 3] = ["asyncio", "uvloop", "trio"];

/// What an entry point's attribute says: the loops, and whether the body runs in the tokio
/// runtime's context (`tokio`).
pub(crate) struct Entry {
    pub(crate) loops: Vec<Ident>,
    pub(crate) tokio: bool,
    /// `debug`: asyncio's debug mode (`main` only).
    pub(crate) debug: Option<Ident>,
}

/// The loop kinds named in the attribute's arguments, and the `tokio` flag.
pub(crate) fn loops(args: TokenStream2, expect: Expect) -> syn::Result<Entry> {
    let named = Punctuated::<Ident, Token![,]>::parse_terminated.parse2(args)?;
    let mut tokio = false;
    let mut debug = None;
    let mut kinds = Vec::new();
    for kind in named {
        if kind == "tokio" {
            tokio = true;
        } else if kind == "debug" && matches!(expect, Expect::One) {
            debug = Some(kind);
        } else if KINDS.contains(&kind.to_string().as_str()) {
            kinds.push(kind);
        } else {
            return Err(Error::new(
                kind.span(),
                "expected a loop (`asyncio`, `uvloop` or `trio`) or `tokio`",
            ));
        }
    }
    let loops = match expect {
        Expect::One if kinds.len() > 1 => {
            return Err(Error::new(
                kinds[1].span(),
                "`main` runs on one loop: `asyncio`, `uvloop` or `trio`",
            ))
        }
        Expect::One if kinds.is_empty() => vec![format_ident!("asyncio")],
        Expect::Many if kinds.is_empty() => {
            KINDS.iter().map(|kind| format_ident!("{kind}")).collect()
        }
        _ => kinds,
    };
    Ok(Entry {
        loops,
        tokio,
        debug,
    })
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

/// Checks the shape of an entry point's function: `async`, no arguments, not generic.
fn check(function: &ItemFn, what: &str) -> syn::Result<()> {
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
    crate::options::refuse_generics(&sig.generics, &format!("`#[pyo3_async::{what}]` functions"))
}

/// The body as a plain `async fn` named `name`, at the place the user wrote it (so that
/// `super::` and the module's own names mean what they meant), with the attributes about the
/// body (`tracing::instrument`, lints, `cfg`).
fn body_function(function: &ItemFn, name: &Ident, attrs: &[TokenStream2]) -> TokenStream2 {
    let mut body = function.clone();
    body.attrs.clear();
    body.vis = syn::Visibility::Inherited;
    body.sig.ident = name.clone();
    quote! {
        #(#attrs)*
        #body
    }
}

/// The future of `call` (the body function called) as a `PyResult<()>`: the body returns
/// `()`, or a result whose error converts into a `PyErr` (its value is dropped). Which one is
/// decided by the type (`pyo3_async::__private::IsResult`), spanned at the declared type.
fn unit_result(function: &ItemFn, call: TokenStream2, tokio: bool) -> TokenStream2 {
    let span = match &function.sig.output {
        ReturnType::Default => function.sig.fn_token.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    // With `tokio`, the body is polled inside the runtime's context (its timers and I/O
    // work); `tokio-default` does that for every entry point (`pyo3_async::run` itself).
    let call = if tokio {
        quote!(::pyo3_async::tokio::in_runtime(#call))
    } else {
        call
    };
    quote_spanned! {span=>
        async move {
            use ::pyo3_async::__private::kinds::*;
            let __pyo3_async_output = #call.await;
            // Through a variable: `(&output).method()` reads as a needless borrow to clippy.
            let __pyo3_async_borrowed = &__pyo3_async_output;
            let __pyo3_async_kind = __pyo3_async_borrowed.__pyo3_async_output_kind();
            __pyo3_async_kind.into_unit_result(__pyo3_async_output)
        }
    }
}

pub(crate) fn expand_main(entry: Entry, function: ItemFn) -> syn::Result<TokenStream2> {
    check(&function, "main")?;
    let kind = loop_kind(&entry.loops[0]);
    let attributes = crate::attributes::split(&function.attrs, Body::Nested, &function.sig.ident)?;
    // Nested in the generated `main`, under its name (the span of an `instrument` is `main`).
    let body_name = function.sig.ident.clone();
    let body = body_function(&function, &body_name, &attributes.body);
    let future = unit_result(&function, quote!(#body_name()), entry.tokio);
    let options = match &entry.debug {
        Some(debug) => quote_spanned!(debug.span()=> ::pyo3_async::LoopOptions::new().debug(true)),
        None => quote!(::pyo3_async::LoopOptions::new()),
    };
    let attrs = &attributes.wrapper;
    let vis = &function.vis;
    let ident = &function.sig.ident;
    Ok(quote! {
        #(#attrs)*
        #vis fn #ident() {
            #body
            ::pyo3_async::__private::pyo3::Python::initialize();
            let ran = ::pyo3_async::__private::pyo3::Python::attach(|py| {
                ::pyo3_async::run_with(py, #kind, &#options, #future)
            });
            if let ::core::result::Result::Err(err) = ran {
                // As Python ends a program that raised: the traceback, exit status 1.
                ::pyo3_async::__private::pyo3::Python::attach(|py| err.print(py));
                ::std::process::exit(1);
            }
        }
    })
}

pub(crate) fn expand_test(entry: Entry, function: ItemFn) -> syn::Result<TokenStream2> {
    check(&function, "test")?;
    let attributes = crate::attributes::split(&function.attrs, Body::Beside, &function.sig.ident)?;
    // Docs describe the test module; `ignore`, `should_panic` and the rest of the wrapper's
    // attributes go on each test.
    let (docs, attrs): (Vec<_>, Vec<_>) = attributes
        .wrapper
        .iter()
        .partition(|attr| attr.to_string().starts_with("# [doc"));
    let vis = &function.vis;
    let ident = &function.sig.ident;
    // Beside the test module, under the test's name: a function and a module live in
    // different namespaces.
    let body_name = ident.clone();
    let body = body_function(&function, &body_name, &attributes.body);
    let future = unit_result(&function, quote!(super::#body_name()), entry.tokio);
    let tests = entry.loops.iter().map(|kind| {
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
        #[doc(hidden)]
        #[allow(dead_code)]
        #body

        #(#docs)*
        #vis mod #ident {
            /// The body as each test runs it (no glob import of the parent: the body's
            /// names resolve where it was written, and this `body` shadows none of them).
            #[doc(hidden)]
            pub(super) fn body() -> impl ::core::future::Future<
                Output = ::pyo3_async::__private::pyo3::PyResult<()>,
            > + ::core::marker::Send + 'static {
                #future
            }

            #(#tests)*
        }
    })
}

/// What is left of a `main` next to an error: an empty `main` (so that the error is not
/// joined by "`main` function not found"), with the body nested in it, unused.
pub(crate) fn unexported_main(function: ItemFn) -> TokenStream2 {
    let ident = function.sig.ident.clone();
    let body = crate::export::unexported(function);
    quote! {
        fn #ident() {
            #body
        }
    }
}

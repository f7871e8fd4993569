//! The expression that builds a `Coroutine` (or `AsyncGenerator`) from a function's body.

use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{ReturnType, Type};

use crate::options::Options;

/// The parameter marked `#[pyo3(cancel_handle)]`: not a Python argument, it receives the
/// coroutine's `CancelHandle`.
pub(crate) struct CancelParameter {
    pub(crate) name: syn::Ident,
    pub(crate) ty: syn::Type,
}

/// The expression building the `Coroutine` (or `AsyncGenerator`) from `future`, whose output
/// has the function's declared type.
pub(crate) fn awaitable(
    options: &Options,
    output: &ReturnType,
    future: TokenStream2,
    qualname: &str,
    cancel: Option<&CancelParameter>,
) -> syn::Result<TokenStream2> {
    let backend = options
        .backend
        .as_ref()
        .map(|backend| quote!(.with_backend(#backend)));
    // The output's kind (a result, or a plain value) comes from its type: see
    // `pyo3_async::__private::IsResult`. Spanned at the declared type, so that an error type
    // without `Into<PyErr>` is reported there.
    let span = match output {
        ReturnType::Default => Span::call_site(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    if options.generator {
        let stream = quote_spanned! {span=>
            ::pyo3_async::__private::flatten_stream(async move {
                use ::pyo3_async::__private::kinds::*;
                let __pyo3_async_output = #future.await;
                // Through a variable: `(&output).method()` reads as a needless borrow to clippy.
                let __pyo3_async_borrowed = &__pyo3_async_output;
                let __pyo3_async_kind = __pyo3_async_borrowed.__pyo3_async_output_kind();
                __pyo3_async_kind.into_stream(__pyo3_async_output)
            })
        };
        let stream = in_runtime(options, stream);
        let stream = if options.allow_threads {
            quote!(::pyo3_async::AllowThreads::new(#stream))
        } else {
            stream
        };
        if options.local {
            return Err(syn::Error::new(
                Span::call_site(),
                "`local` is for coroutines: an async generator's stream must be `Send`",
            ));
        }
        if let Some(cancel) = cancel {
            return Err(syn::Error::new(
                cancel.name.span(),
                "`#[pyo3(cancel_handle)]` is for coroutines: an async generator is cancelled \
                 by `aclose()`, which drops the stream",
            ));
        }
        let label = static_label(qualname, span);
        return Ok(
            quote!(::pyo3_async::AsyncGenerator::new(#stream).__with_label(#label) #backend),
        );
    }
    if let ReturnType::Type(_, ty) = output {
        if returns_stream(ty) {
            return Err(syn::Error::new(
                ty.span(),
                "this returns a stream: add the `generator` option \
                 (`#[pyo3_async::pyfunction(generator)]`, or `#[pyo3_async(generator)]` on a \
                 method) to export it as a Python async generator",
            ));
        }
    }
    let converted = match output {
        ReturnType::Default => quote! {{
            #future.await;
            ::pyo3_async::__private::pyo3::PyResult::Ok(())
        }},
        ReturnType::Type(..) => quote_spanned! {span=> {
            use ::pyo3_async::__private::kinds::*;
            let __pyo3_async_output = #future.await;
            // Through a variable: `(&output).method()` reads as a needless borrow to clippy.
            let __pyo3_async_borrowed = &__pyo3_async_output;
            let __pyo3_async_kind = __pyo3_async_borrowed.__pyo3_async_output_kind();
            __pyo3_async_kind.into_py_result(__pyo3_async_output)
        }},
    };
    let future = quote!(async move { #converted });
    // A `!Send` body is checked for its thread innermost, so the wrappers around it are `Send`.
    let future = if options.local {
        quote!(::pyo3_async::__private::ThreadBound::new(#future))
    } else {
        future
    };
    let future = in_runtime(options, future);
    let future = if options.allow_threads {
        quote!(::pyo3_async::AllowThreads::new(#future))
    } else {
        future
    };
    let coroutine = match cancel {
        // The handle is the body's parameter, bound by the closure with the type the user
        // declared (a type they imported is used; a wrong one is an error at their type).
        Some(CancelParameter { name, ty }) => quote_spanned! {span=>
            ::pyo3_async::Coroutine::with_cancel_handle(
                move |#name: #ty| #future,
            )
        },
        None => quote_spanned!(span=> ::pyo3_async::Coroutine::new(#future)),
    };
    let label = static_label(qualname, span);
    Ok(quote_spanned! {span=>
        #coroutine
            .__with_label(#label)
            #backend
    })
}

/// A reference to a static `StaticLabel` of the function: its name and where it is defined
/// (`line!()` at `span`, the declared output type: the signature's line).
fn static_label(qualname: &str, span: Span) -> TokenStream2 {
    quote_spanned! {span=> {
        static LABEL: ::pyo3_async::__private::StaticLabel =
            ::pyo3_async::__private::StaticLabel {
                qualname: #qualname,
                file: ::core::file!(),
                line: ::core::line!(),
            };
        &LABEL
    }}
}

/// `future` (or stream) polled in the tokio runtime's context: with the `tokio` option (the
/// runtime it names, or the process-wide one), or by default under pyo3-async's
/// `tokio-default` feature.
fn in_runtime(options: &Options, future: TokenStream2) -> TokenStream2 {
    if let Some(runtime) = &options.tokio_runtime {
        quote_spanned!(runtime.span()=> ::pyo3_async::tokio::in_runtime_of(#runtime(), #future))
    } else if options.tokio {
        quote!(::pyo3_async::tokio::in_runtime(#future))
    } else {
        quote!(::pyo3_async::__private::by_default(#future))
    }
}

/// Whether the declared output is an `impl Stream` (or `impl TryStream`), which the
/// `generator` option exports.
fn returns_stream(ty: &Type) -> bool {
    fn names_stream(tokens: TokenStream2, after_impl: bool) -> bool {
        let mut after_impl = after_impl;
        tokens.into_iter().any(|token| match token {
            proc_macro2::TokenTree::Ident(ident) if ident == "impl" => {
                after_impl = true;
                false
            }
            proc_macro2::TokenTree::Ident(ident) => {
                after_impl && (ident == "Stream" || ident == "TryStream")
            }
            proc_macro2::TokenTree::Group(group) => names_stream(group.stream(), after_impl),
            _ => false,
        })
    }
    names_stream(ty.to_token_stream(), false)
}

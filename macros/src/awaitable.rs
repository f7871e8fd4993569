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
    if options.generator {
        let stream = quote!(::pyo3_async::__private::flatten_stream(#future));
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
        return Ok(quote!(::pyo3_async::AsyncGenerator::new(#stream) #backend));
    }
    let span = match output {
        ReturnType::Default => Span::call_site(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    // The body's block gets the declared output type, for inference (`Err(e)` alone fixes
    // neither `T` nor `E`); `impl Trait` cannot be named there, and needs no help.
    let future = match output {
        ReturnType::Type(_, ty) if !mentions_impl(ty) => {
            quote_spanned!(span=> ::pyo3_async::__private::with_output::<#ty, _>(#future))
        }
        _ => future,
    };
    let converted = match output {
        ReturnType::Default => quote! {{
            #future.await;
            ::pyo3::PyResult::Ok(())
        }},
        ReturnType::Type(_, ty) if returns_result(ty) => {
            quote_spanned!(span=> ::pyo3_async::__private::into_py_result(#future.await))
        }
        ReturnType::Type(..) => quote!(::pyo3::PyResult::Ok(#future.await)),
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
    Ok(quote_spanned! {span=>
        #coroutine
            .__with_label({
                static LABEL: ::pyo3_async::__private::StaticLabel =
                    ::pyo3_async::__private::StaticLabel {
                        qualname: #qualname,
                        file: ::core::file!(),
                        line: ::core::line!(),
                    };
                &LABEL
            })
            #backend
    })
}

/// `future` (or stream) polled in the tokio runtime's context: with the `tokio` option, or by
/// default under pyo3-async's `tokio-default` feature.
fn in_runtime(options: &Options, future: TokenStream2) -> TokenStream2 {
    if options.tokio {
        quote!(::pyo3_async::tokio::in_runtime(#future))
    } else {
        quote!(::pyo3_async::__private::by_default(#future))
    }
}

/// Whether the declared output is a `Result` (`PyResult<T>`, `Result<T, E>`), by its name.
pub(crate) fn returns_result(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "PyResult" || segment.ident == "Result"),
        Type::Paren(inner) => returns_result(&inner.elem),
        Type::Group(inner) => returns_result(&inner.elem),
        _ => false,
    }
}

/// Whether `ty` contains an `impl Trait`, anywhere.
fn mentions_impl(ty: &Type) -> bool {
    fn any_impl(tokens: TokenStream2) -> bool {
        tokens.into_iter().any(|token| match token {
            proc_macro2::TokenTree::Ident(ident) => ident == "impl",
            proc_macro2::TokenTree::Group(group) => any_impl(group.stream()),
            _ => false,
        })
    }
    any_impl(ty.to_token_stream())
}

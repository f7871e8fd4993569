//! Exported async functions and methods: the `#[pyo3::pyfunction]` wrapper around the body.

use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Error, FnArg, ImplItem, ImplItemFn, ItemFn, ItemImpl, Pat, Signature, Type};

use crate::awaitable::{awaitable, CancelParameter};
use crate::options::{pyo3_name, pyo3_options, refuse_generics, Options};

pub(crate) fn expand_function(options: Options, function: ItemFn) -> syn::Result<TokenStream2> {
    if function.sig.asyncness.is_none() {
        return pass_through(options, function);
    }
    refuse_generics(&function.sig.generics, "exported async functions")?;
    let python_name = options
        .name
        .clone()
        .or_else(|| pyo3_name(&function.attrs))
        .unwrap_or_else(|| function.sig.ident.unraw().to_string());
    let arguments = owned_arguments(&function.sig, options.pass_module)?;
    let future = if options.generator {
        // A nested `async fn` with the declared signature: the stream's type is checked
        // against the declaration (and the traits it names are used).
        let mut body = function.clone();
        body.attrs.clear();
        body.vis = syn::Visibility::Inherited;
        body.sig.ident = format_ident!("__pyo3_async_body");
        for input in &mut body.sig.inputs {
            if let FnArg::Typed(typed) = input {
                typed.attrs.clear();
            }
        }
        let names = &arguments.names;
        quote!({
            #body
            __pyo3_async_body(#(#names),*)
        })
    } else {
        let body = &function.block;
        quote!(async move #body)
    };
    let awaitable = awaitable(
        &options,
        &function.sig.output,
        future,
        &python_name,
        arguments.cancel.as_ref(),
    )?;
    let pyo3_options = pyo3_options(&options);
    let attrs = &function.attrs;
    let vis = &function.vis;
    let ident = &function.sig.ident;
    let inputs = wrapper_inputs(&function.sig, options.pass_module);
    let conversions = &arguments.conversions;
    let returns = returns(&options);
    Ok(quote! {
        #[::pyo3::pyfunction #pyo3_options]
        #(#attrs)*
        #vis fn #ident(#(#inputs),*) -> #returns {
            #(#conversions)*
            #awaitable
        }
    })
}

pub(crate) fn expand_methods(options: Options, mut block: ItemImpl) -> syn::Result<TokenStream2> {
    if let Some(option) = options.pyo3.first() {
        return Err(Error::new(
            option.span(),
            "options go on each method, as `#[pyo3_async(...)]` or `#[pyo3(...)]`",
        ));
    }
    let self_ty = &block.self_ty;
    let class_name = match &**self_ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .map(|segment| segment.ident.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let mut bodies = Vec::new();
    for item in &mut block.items {
        let ImplItem::Fn(method) = item else { continue };
        if method.sig.asyncness.is_none() {
            // A plain method is PyO3's; our options on it would be left for rustc to reject
            // as an unknown attribute.
            if let Some(attr) = method
                .attrs
                .iter()
                .find(|attr| attr.path().is_ident("pyo3_async"))
            {
                return Err(Error::new(
                    attr.path().span(),
                    "`#[pyo3_async(...)]` options apply to `async fn` methods only; a plain \
                     method takes PyO3's `#[pyo3(...)]`",
                ));
            }
            continue;
        }
        refuse_generics(&method.sig.generics, "exported async methods")?;
        let mut method_options = Options {
            backend: options.backend.clone(),
            allow_threads: options.allow_threads,
            tokio: options.tokio,
            local: options.local,
            generator: options.generator,
            ..Options::default()
        };
        method_options.take_from(&mut method.attrs)?;
        let (wrapper, body) = expand_method(method_options, method, &class_name)?;
        *method = wrapper;
        bodies.push(body);
    }
    let (impl_generics, _, where_clause) = block.generics.split_for_impl();
    Ok(quote! {
        #[::pyo3::pymethods]
        #block

        #[doc(hidden)]
        impl #impl_generics #self_ty #where_clause {
            #(#bodies)*
        }
    })
}

/// Splits an async method into the Python-facing wrapper (in `#[pymethods]`) and the async
/// body, kept as a plain method under a hidden name.
fn expand_method(
    options: Options,
    method: &ImplItemFn,
    class_name: &str,
) -> syn::Result<(ImplItemFn, TokenStream2)> {
    let sig = &method.sig;
    if let Some(attr) = method.attrs.iter().find(|attr| {
        ["new", "getter", "setter"]
            .iter()
            .any(|kind| attr.path().is_ident(kind))
    }) {
        return Err(Error::new(
            attr.path().span(),
            "`#[new]`, `#[getter]` and `#[setter]` cannot be `async fn`: Python calls them for \
             a value now (an instance, an attribute), not for a coroutine; make it a plain \
             `fn`, and export the async work as a method of its own",
        ));
    }
    let receiver = match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) => {
            if receiver.mutability.is_some() || receiver.reference.is_none() {
                return Err(Error::new(
                    receiver.span(),
                    "async methods take `&self`: the object is shared with Python while the \
                     coroutine runs, so `&mut self` (or `self`) cannot be held across its \
                     suspensions; use a `#[pyclass(frozen)]` class with interior mutability",
                ));
            }
            true
        }
        _ => false,
    };
    let python_name = options
        .name
        .clone()
        .or_else(|| pyo3_name(&method.attrs))
        .unwrap_or_else(|| sig.ident.unraw().to_string());
    let qualname = if class_name.is_empty() {
        python_name.clone()
    } else {
        format!("{class_name}.{python_name}")
    };
    let arguments = owned_arguments(sig, options.pass_module)?;
    let hidden = format_ident!("__pyo3_async_{}", sig.ident);
    let names = &arguments.names;
    let call = if receiver {
        // The object is cloned as `Py<Self>` into the future and borrowed from it for the
        // future's whole life: `Py::get` needs a frozen (immutable, `Sync`) class, which is
        // what makes that borrow sound while Python keeps using the object.
        quote_spanned! {sig.inputs.span()=>
            async move {
                let __slf: &Self = ::pyo3::Py::get(&__slf);
                __slf.#hidden(#(#names),*).await
            }
        }
    } else {
        quote!(Self::#hidden(#(#names),*))
    };
    let awaitable = awaitable(
        &options,
        &sig.output,
        call,
        &qualname,
        arguments.cancel.as_ref(),
    )?;
    let mut wrapper_sig = sig.clone();
    wrapper_sig.asyncness = None;
    wrapper_sig.inputs = wrapper_inputs(sig, options.pass_module)
        .into_iter()
        .collect();
    if receiver {
        wrapper_sig
            .inputs
            .insert(0, syn::parse_quote!(__slf: ::pyo3::Py<Self>));
    }
    let returns = returns(&options);
    wrapper_sig.output = syn::parse_quote!(-> #returns);
    let conversions = &arguments.conversions;
    // `#[expect(..)]` concerns the body the user wrote: on the generated wrapper it would go
    // unfulfilled.
    let attrs: Vec<_> = method
        .attrs
        .iter()
        .filter(|attr| !attr.path().is_ident("expect"))
        .collect();
    let vis = &method.vis;
    // PyO3's own options given as `#[pyo3_async(name = .., signature = .., ..)]` go to PyO3
    // with the wrapper, as those written `#[pyo3(..)]` do (they stay among `attrs`).
    let pyo3_options = &options.pyo3;
    let pyo3_attribute = if pyo3_options.is_empty() {
        quote!()
    } else {
        quote!(#[pyo3(#(#pyo3_options),*)])
    };
    let wrapper: ImplItemFn = syn::parse_quote! {
        #pyo3_attribute
        #(#attrs)*
        #vis #wrapper_sig {
            #(#conversions)*
            #awaitable
        }
    };
    let mut body = method.clone();
    for input in &mut body.sig.inputs {
        if let FnArg::Typed(typed) = input {
            typed.attrs.clear();
        }
    }
    // What decides whether and how the body compiles goes with it: `cfg`, `cfg_attr` and the
    // lint attributes; PyO3's attributes stay with the wrapper only.
    body.attrs.retain(|attr| {
        let kept = [
            "allow", "expect", "warn", "deny", "forbid", "cfg", "cfg_attr", "doc",
        ]
        .iter()
        .any(|kept| attr.path().is_ident(kept));
        // A `cfg_attr` that adds a PyO3 attribute belongs to the wrapper alone.
        kept && !(attr.path().is_ident("cfg_attr")
            && attr.meta.to_token_stream().to_string().contains("pyo3"))
    });
    // The hidden name of a dunder (`__pyo3_async___aenter__`) is not snake case: the user's
    // crate must not warn about a name it never wrote.
    body.attrs.push(syn::parse_quote!(#[allow(non_snake_case)]));
    body.sig.ident = hidden;
    body.vis = syn::Visibility::Inherited;
    Ok((wrapper, body.into_token_stream()))
}

/// A plain function is PyO3's business, so that one attribute serves a whole module.
fn pass_through(options: Options, function: ItemFn) -> syn::Result<TokenStream2> {
    if options.backend.is_some()
        || options.allow_threads
        || options.tokio
        || options.local
        || options.generator
    {
        return Err(Error::new(
            function.sig.fn_token.span(),
            "`asyncio`, `trio`, `allow_threads`, `tokio`, `local` and `generator` apply to `async fn` only",
        ));
    }
    let pyo3_options = pyo3_options(&options);
    Ok(quote! {
        #[::pyo3::pyfunction #pyo3_options]
        #function
    })
}

/// The arguments the future takes over, which must be owned (the future is `'static`).
struct Arguments {
    names: Vec<syn::Ident>,
    /// The parameter marked `#[pyo3(cancel_handle)]`.
    cancel: Option<CancelParameter>,
    /// Statements turning the wrapper's arguments into the future's (for `pass_module`).
    conversions: Vec<TokenStream2>,
}

fn owned_arguments(sig: &Signature, pass_module: bool) -> syn::Result<Arguments> {
    let mut names = Vec::new();
    let mut conversions = Vec::new();
    let mut cancel = None;
    let mut first = true;
    for input in &sig.inputs {
        let FnArg::Typed(typed) = input else { continue };
        let Pat::Ident(pattern) = &*typed.pat else {
            return Err(Error::new(
                typed.pat.span(),
                "arguments of exported async functions must be plain names",
            ));
        };
        let name = pattern.ident.clone();
        if is_cancel_handle(typed) {
            if cancel.is_some() {
                return Err(Error::new(
                    typed.span(),
                    "one `#[pyo3(cancel_handle)]` at most",
                ));
            }
            cancel = Some(CancelParameter {
                name: name.clone(),
                ty: (*typed.ty).clone(),
            });
            names.push(name);
            continue;
        }
        if std::mem::take(&mut first) && pass_module {
            // The wrapper gets the module borrowed; the future owns a reference to it.
            conversions.push(quote!(let #name = ::pyo3::Bound::clone(#name).unbind();));
        } else if let Type::Reference(reference) = &*typed.ty {
            return Err(Error::new(
                reference.span(),
                "arguments of exported async functions cannot be borrowed: the coroutine \
                 outlives the call, so take an owned value (`String`, `Vec<T>`, \
                 `Py<PyAny>`...)",
            ));
        }
        names.push(name);
    }
    Ok(Arguments {
        names,
        cancel,
        conversions,
    })
}

/// Whether a parameter is marked `#[pyo3(cancel_handle)]`.
fn is_cancel_handle(typed: &syn::PatType) -> bool {
    typed.attrs.iter().any(|attr| {
        attr.path().is_ident("pyo3")
            && attr
                .parse_args::<syn::Ident>()
                .is_ok_and(|ident| ident == "cancel_handle")
    })
}

/// The wrapper's parameters: the function's, with a `pass_module` module borrowed.
fn wrapper_inputs(sig: &Signature, pass_module: bool) -> Vec<FnArg> {
    let mut inputs: Vec<FnArg> = sig
        .inputs
        .iter()
        .filter(|input| matches!(input, FnArg::Typed(typed) if !is_cancel_handle(typed)))
        .cloned()
        .collect();
    if pass_module {
        if let Some(FnArg::Typed(module)) = inputs.first_mut() {
            *module.ty = syn::parse_quote!(&::pyo3::Bound<'_, ::pyo3::types::PyModule>);
        }
    }
    inputs
}

fn returns(options: &Options) -> TokenStream2 {
    if options.generator {
        quote!(::pyo3_async::AsyncGenerator)
    } else {
        quote!(::pyo3_async::Coroutine)
    }
}

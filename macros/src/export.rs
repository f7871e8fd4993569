//! Exported async functions and methods: the `#[pyo3::pyfunction]` wrapper around the body.

use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Error, FnArg, ImplItem, ImplItemFn, ItemFn, ItemImpl, Pat, Signature, Type};

use crate::attributes::{self, Body, PYO3};
use crate::awaitable::{awaitable, CancelParameter};
use crate::options::{block_crate, pyo3_name, pyo3_options, refuse_generics, Options};

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
    let attributes = attributes::split(&function.attrs, Body::Nested, &function.sig.ident)?;
    // The body as written, as an `async fn` nested in the wrapper, under the same name: its
    // output type drives inference, its parameters keep their declared types (an imported
    // type is used), the attributes about the body (`tracing::instrument`, lints) apply to it
    // and name it as written, and it shares the wrapper's lint scope.
    let mut body = function.clone();
    body.attrs.clear();
    body.vis = syn::Visibility::Inherited;
    for input in &mut body.sig.inputs {
        if let FnArg::Typed(typed) = input {
            typed.attrs.clear();
        }
    }
    let body_attrs = &attributes.body;
    let names = &arguments.names;
    let ident = &function.sig.ident;
    let future = quote!({
        #(#body_attrs)*
        #body
        #ident(#(#names),*)
    });
    let awaitable = awaitable(
        &options,
        &function.sig.output,
        future,
        &python_name,
        arguments.cancel.as_ref(),
    )?;
    let pyo3_path = options.pyo3_path();
    let pyo3_options = pyo3_options(&options);
    let wrapper_attrs = &attributes.wrapper;
    let vis = &function.vis;
    let inputs = wrapper_inputs(&function.sig, options.pass_module);
    let conversions = &arguments.conversions;
    let returns = returns(&options);
    Ok(quote! {
        #[#pyo3_path::pyfunction #pyo3_options]
        #(#wrapper_attrs)*
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
            "options go on each method, as `#[pyo3_async(...)]` or `#[pyo3(...)]`; the block \
             takes ours (`asyncio`, `trio`, `allow_threads`, `tokio`, `local`) and `crate`",
        ));
    }
    // PyO3's path: `#[pyo3_async::pymethods(crate = "..")]`, or PyO3's own
    // `#[pyo3(crate = "..")]` on the block.
    let krate = match &options.krate {
        Some(krate) => {
            let path = &krate.string;
            block.attrs.push(syn::parse_quote!(#[pyo3(crate = #path)]));
            Some(krate.path.clone())
        }
        None => block_crate(&block.attrs)?,
    };
    let pyo3_path = krate.map_or_else(|| quote!(::pyo3), |path| quote!(#path));
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
            tokio_runtime: options.tokio_runtime.clone(),
            local: options.local,
            generator: options.generator,
            ..Options::default()
        };
        method_options.take_from(&mut method.attrs)?;
        if let Some(krate) = &method_options.krate {
            return Err(Error::new(
                krate.string.span(),
                "`crate` goes on the `impl` block (`#[pyo3_async::pymethods(crate = \"..\")]`), \
                 as PyO3 takes it on `#[pymethods]`",
            ));
        }
        let (wrapper, body) = expand_method(method_options, method, &class_name)?;
        *method = wrapper;
        bodies.push(body);
    }
    let (impl_generics, _, where_clause) = block.generics.split_for_impl();
    Ok(quote! {
        #[#pyo3_path::pymethods]
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
                let __slf: &Self = ::pyo3_async::__private::pyo3::Py::get(&__slf);
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
        wrapper_sig.inputs.insert(
            0,
            syn::parse_quote!(__slf: ::pyo3_async::__private::pyo3::Py<Self>),
        );
    }
    let returns = returns(&options);
    wrapper_sig.output = syn::parse_quote!(-> #returns);
    let conversions = &arguments.conversions;
    let attributes = attributes::split(&method.attrs, Body::Beside, &sig.ident)?;
    let wrapper_attrs = &attributes.wrapper;
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
        #(#wrapper_attrs)*
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
    body.attrs.clear();
    body.sig.ident = hidden;
    body.vis = syn::Visibility::Inherited;
    let body_attrs = &attributes.body;
    // The hidden name of a dunder (`__pyo3_async___aenter__`) is not snake case: the user's
    // crate must not warn about a name it never wrote.
    let body = quote! {
        #(#body_attrs)*
        #[allow(non_snake_case)]
        #body
    };
    Ok((wrapper, body))
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
    let pyo3_path = options.pyo3_path();
    let pyo3_options = pyo3_options(&options);
    Ok(quote! {
        #[#pyo3_path::pyfunction #pyo3_options]
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
            refuse_borrowed_module(&typed.ty)?;
            conversions.push(quote!(
                let #name = ::pyo3_async::__private::pyo3::Bound::unbind(
                    ::core::clone::Clone::clone(#name),
                );
            ));
        } else {
            refuse_borrowing(&typed.ty)?;
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
    // The wrapper only moves its arguments on: a `mut` is the body's business.
    for input in &mut inputs {
        if let FnArg::Typed(typed) = input {
            if let Pat::Ident(pattern) = &mut *typed.pat {
                pattern.mutability = None;
            }
        }
    }
    if pass_module {
        if let Some(FnArg::Typed(module)) = inputs.first_mut() {
            *module.ty = syn::parse_quote!(
                &::pyo3_async::__private::pyo3::Bound<
                    '_,
                    ::pyo3_async::__private::pyo3::types::PyModule,
                >
            );
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

/// Refuses a parameter the coroutine cannot own, at the parameter, saying what to take
/// instead: the coroutine outlives the call, and runs across suspensions on whatever thread
/// polls it, with the interpreter attached only while it is polled.
fn refuse_borrowing(ty: &Type) -> syn::Result<()> {
    if let Some((span, why)) = borrowed_part(ty.to_token_stream()) {
        return Err(Error::new(span, why));
    }
    match borrowed_lifetime(ty.to_token_stream()) {
        Some(span) => Err(Error::new(
            span,
            "arguments of exported async functions cannot borrow: the coroutine outlives the \
             call, so take an owned value (`String`, `Vec<T>`, `Py<PyAny>`...)",
        )),
        None => Ok(()),
    }
}

/// The first part of a parameter's type (at any depth: `Option<&str>`, `Vec<Bound<..>>`)
/// that the coroutine could not own, and why.
fn borrowed_part(tokens: TokenStream2) -> Option<(proc_macro2::Span, &'static str)> {
    const BORROWED: &str = "arguments of exported async functions cannot be borrowed: the \
        coroutine outlives the call, so take an owned value (`String`, `Vec<T>`, `Py<PyAny>`...)";
    const PYTHON: &str = "a `Python<'_>` token cannot be held by a coroutine: it proves the \
        interpreter is attached during this call only, and the body runs later, across \
        suspensions; call `Python::attach` in the body where it needs one";
    const BOUND: &str = "a `Bound<'_, T>` is tied to the interpreter attached during this \
        call, which the coroutine outlives: take `Py<T>` (`Py<PyAny>`, `Py<PyDict>`...) and \
        `bind` it inside `Python::attach`";
    const PYREF: &str = "a `PyRef` borrow cannot be held across the coroutine's suspensions: \
        take `&self` on a `#[pyclass(frozen)]` class, or `slf: Py<Self>` and borrow it inside \
        `Python::attach`";
    for token in tokens {
        match token {
            proc_macro2::TokenTree::Punct(punct) if punct.as_char() == '&' => {
                return Some((punct.span(), BORROWED));
            }
            proc_macro2::TokenTree::Ident(ident) => {
                let why = match ident.to_string().as_str() {
                    "Python" => PYTHON,
                    "Bound" | "Borrowed" => BOUND,
                    "PyRef" | "PyRefMut" => PYREF,
                    _ => continue,
                };
                return Some((ident.span(), why));
            }
            proc_macro2::TokenTree::Group(group) => {
                if let Some(found) = borrowed_part(group.stream()) {
                    return Some(found);
                }
            }
            proc_macro2::TokenTree::Punct(_) | proc_macro2::TokenTree::Literal(_) => {}
        }
    }
    None
}

/// Where `tokens` name a lifetime other than `'static`, if they do.
fn borrowed_lifetime(tokens: TokenStream2) -> Option<proc_macro2::Span> {
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        match token {
            proc_macro2::TokenTree::Punct(punct) if punct.as_char() == '\'' => {
                if let Some(proc_macro2::TokenTree::Ident(name)) = tokens.peek() {
                    if name != "static" {
                        return Some(punct.span());
                    }
                }
            }
            proc_macro2::TokenTree::Group(group) => {
                if let Some(span) = borrowed_lifetime(group.stream()) {
                    return Some(span);
                }
            }
            _ => {}
        }
    }
    None
}

/// `pass_module`'s parameter is the module owned (`Py<PyModule>`): the wrapper receives it
/// borrowed and hands the coroutine a reference it owns.
fn refuse_borrowed_module(ty: &Type) -> syn::Result<()> {
    let borrowed = matches!(ty, Type::Reference(_))
        || matches!(ty, Type::Path(path) if path.path.segments.last()
            .is_some_and(|last| last.ident == "Bound" || last.ident == "Borrowed"));
    if borrowed {
        return Err(Error::new(
            ty.span(),
            "with `pass_module`, an async function takes its module as `Py<PyModule>`: the \
             coroutine outlives the call, so it keeps a reference of its own",
        ));
    }
    Ok(())
}

/// `function` as a plain, unexported function: what is left of it next to an error, so that
/// what it uses (imports, helpers) is used, and the error is the only thing reported.
pub(crate) fn unexported(mut function: ItemFn) -> TokenStream2 {
    let body_attrs = attributes::split(&function.attrs, Body::Nested, &function.sig.ident)
        .map(|split| split.body)
        .unwrap_or_default();
    function.attrs.clear();
    clear_parameter_attributes(&mut function.sig);
    quote! {
        #(#body_attrs)*
        #[allow(dead_code)]
        #function
    }
}

/// `block` as a plain `impl`, without PyO3's attributes: what is left of it next to an error.
pub(crate) fn unexported_methods(mut block: ItemImpl) -> TokenStream2 {
    // PyO3's attributes, also under a `cfg_attr`, which only PyO3's macros make known.
    let is_pyo3 = |attr: &syn::Attribute| {
        PYO3.iter().any(|name| attr.path().is_ident(name))
            || (attr.path().is_ident("cfg_attr") && {
                let tokens = attr.meta.to_token_stream().to_string();
                PYO3.iter().any(|name| tokens.contains(name))
            })
    };
    block.attrs.retain(|attr| !is_pyo3(attr));
    for item in &mut block.items {
        if let ImplItem::Fn(method) = item {
            method.attrs.retain(|attr| !is_pyo3(attr));
            clear_parameter_attributes(&mut method.sig);
        }
    }
    quote! {
        #[allow(dead_code)]
        #block
    }
}

fn clear_parameter_attributes(sig: &mut Signature) {
    for input in &mut sig.inputs {
        if let FnArg::Typed(typed) = input {
            typed.attrs.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{expand_function, expand_methods};
    use crate::options::Options;

    /// Whether `expanded` names PyO3 as `::pyo3` anywhere but through pyo3-async's own
    /// re-export.
    fn names_pyo3_directly(expanded: &str) -> bool {
        expanded
            .replace(":: pyo3_async :: __private :: pyo3 ::", "")
            .contains(":: pyo3 ::")
    }

    #[test]
    fn with_crate_pyo3_is_named_only_by_the_given_path() {
        let options = Options::parse(quote::quote!(crate = "renamed", pass_module)).unwrap();
        let function = syn::parse_quote! {
            async fn f(module: Py<PyModule>, #[pyo3(cancel_handle)] cancel: CancelHandle) -> u8 {
                1
            }
        };
        let expanded = expand_function(options, function).unwrap().to_string();
        assert!(!names_pyo3_directly(&expanded), "{expanded}");
        assert!(expanded.contains("renamed :: pyfunction"), "{expanded}");
        assert!(expanded.contains("crate = \"renamed\""), "{expanded}");

        let options = Options::parse(quote::quote!(crate = "renamed")).unwrap();
        let block = syn::parse_quote! {
            impl Counter {
                async fn count(&self) -> u8 {
                    1
                }
            }
        };
        let expanded = expand_methods(options, block).unwrap().to_string();
        assert!(!names_pyo3_directly(&expanded), "{expanded}");
        assert!(expanded.contains("renamed :: pymethods"), "{expanded}");
    }
}

//! Attribute macros of `pyo3-async`; use them through `pyo3_async::pyfunction` and
//! `pyo3_async::pymethods`, where they are documented.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Error, FnArg, ImplItem, ImplItemFn, ItemFn, ItemImpl, Meta, Pat, ReturnType,
    Signature, Token, Type,
};

/// `#[pyo3_async::pyfunction(options)]` on an `async fn`.
#[proc_macro_attribute]
pub fn pyfunction(args: TokenStream, item: TokenStream) -> TokenStream {
    let parsed = Options::parse(args.into()).and_then(|options| {
        let function = syn::parse::<ItemFn>(item)?;
        expand_function(options, function)
    });
    parsed.unwrap_or_else(Error::into_compile_error).into()
}

/// `#[pyo3_async::pymethods]` on an `impl` block of a `#[pyclass]`.
#[proc_macro_attribute]
pub fn pymethods(args: TokenStream, item: TokenStream) -> TokenStream {
    let parsed = Options::parse(args.into()).and_then(|options| {
        let block = syn::parse::<ItemImpl>(item)?;
        expand_methods(options, block)
    });
    parsed.unwrap_or_else(Error::into_compile_error).into()
}

/// The options of both attributes: ours, and PyO3's, passed on.
#[derive(Default)]
struct Options {
    /// `asyncio` or `trio`: the backend, instead of detecting it.
    backend: Option<TokenStream2>,
    /// `allow_threads`: poll with the interpreter released.
    allow_threads: bool,
    /// `tokio`: poll inside the tokio runtime's context (feature `tokio` of pyo3-async).
    tokio: bool,
    /// `generator`: the function returns a stream, exported as an async generator.
    generator: bool,
    /// `name = "..."`, for `__name__` too.
    name: Option<String>,
    /// Options for `#[pyo3::pyfunction]` (`name`, `signature`, `text_signature`,
    /// `pass_module`, `crate`, `warn`).
    pyo3: Vec<Meta>,
    pass_module: bool,
}

impl Options {
    fn parse(args: TokenStream2) -> syn::Result<Self> {
        let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args)?;
        let mut options = Options::default();
        for meta in metas {
            options.add(meta)?;
        }
        Ok(options)
    }

    /// Also reads `#[pyo3_async(...)]` attributes on methods.
    fn add(&mut self, meta: Meta) -> syn::Result<()> {
        let Some(ident) = meta.path().get_ident().map(ToString::to_string) else {
            return Err(Error::new(meta.span(), UNSUPPORTED));
        };
        match (ident.as_str(), &meta) {
            ("asyncio", Meta::Path(_)) => {
                self.backend = Some(quote!(::pyo3_async::Backend::Asyncio));
            }
            ("trio", Meta::Path(_)) => self.backend = Some(quote!(::pyo3_async::Backend::Trio)),
            ("allow_threads", Meta::Path(_)) => self.allow_threads = true,
            ("tokio", Meta::Path(_)) => self.tokio = true,
            ("generator", Meta::Path(_)) => self.generator = true,
            ("name", Meta::NameValue(value)) => {
                if let syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(name),
                    ..
                }) = &value.value
                {
                    self.name = Some(name.value());
                }
                self.pyo3.push(meta);
            }
            ("pass_module", Meta::Path(_)) => {
                self.pass_module = true;
                self.pyo3.push(meta);
            }
            ("signature" | "text_signature" | "crate" | "warn", _) => self.pyo3.push(meta),
            _ => return Err(Error::new(meta.span(), UNSUPPORTED)),
        }
        Ok(())
    }

    /// Our options out of `#[pyo3_async(...)]` attributes, which are removed.
    fn take_from(&mut self, attrs: &mut Vec<Attribute>) -> syn::Result<()> {
        let mut kept = Vec::with_capacity(attrs.len());
        for attr in attrs.drain(..) {
            if attr.path().is_ident("pyo3_async") {
                let metas =
                    attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
                for meta in metas {
                    self.add(meta)?;
                }
            } else {
                kept.push(attr);
            }
        }
        *attrs = kept;
        Ok(())
    }
}

const UNSUPPORTED: &str = "unsupported option: expected `asyncio`, `trio`, `allow_threads`, \
    `tokio`, `generator`, or a `#[pyo3::pyfunction]` option (`name`, `signature`, `text_signature`, \
    `pass_module`, `crate`, `warn`)";

fn expand_function(options: Options, function: ItemFn) -> syn::Result<TokenStream2> {
    if function.sig.asyncness.is_none() {
        return pass_through(options, function);
    }
    let python_name = options
        .name
        .clone()
        .or_else(|| pyo3_name(&function.attrs))
        .unwrap_or_else(|| function.sig.ident.to_string());
    let arguments = owned_arguments(&function.sig, options.pass_module)?;
    let body = &function.block;
    let awaitable = awaitable(
        &options,
        &function.sig.output,
        quote!(async move #body),
        &python_name,
    );
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

fn expand_methods(options: Options, mut block: ItemImpl) -> syn::Result<TokenStream2> {
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
            continue;
        }
        let mut method_options = Options {
            backend: options.backend.clone(),
            allow_threads: options.allow_threads,
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
        .unwrap_or_else(|| sig.ident.to_string());
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
    let awaitable = awaitable(&options, &sig.output, call, &qualname);
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
    let attrs = &method.attrs;
    let vis = &method.vis;
    let wrapper: ImplItemFn = syn::parse_quote! {
        #(#attrs)*
        #vis #wrapper_sig {
            #(#conversions)*
            #awaitable
        }
    };
    let mut body = method.clone();
    body.attrs
        .retain(|attr| attr.path().is_ident("allow") || attr.path().is_ident("doc"));
    body.sig.ident = hidden;
    body.vis = syn::Visibility::Inherited;
    Ok((wrapper, body.into_token_stream()))
}

/// A plain function is PyO3's business, so that one attribute serves a whole module.
fn pass_through(options: Options, function: ItemFn) -> syn::Result<TokenStream2> {
    if options.backend.is_some() || options.allow_threads || options.tokio || options.generator {
        return Err(Error::new(
            function.sig.fn_token.span(),
            "`asyncio`, `trio`, `allow_threads`, `tokio` and `generator` apply to `async fn` only",
        ));
    }
    let pyo3_options = pyo3_options(&options);
    Ok(quote! {
        #[::pyo3::pyfunction #pyo3_options]
        #function
    })
}

fn pyo3_options(options: &Options) -> TokenStream2 {
    let pyo3_options = &options.pyo3;
    if pyo3_options.is_empty() {
        quote!()
    } else {
        quote!((#(#pyo3_options),*))
    }
}

/// The `name = "..."` of a `#[pyo3(...)]` attribute, if any.
fn pyo3_name(attrs: &[Attribute]) -> Option<String> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("pyo3"))
        .filter_map(|attr| {
            attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                .ok()
        })
        .flatten()
        .find_map(|meta| match meta {
            Meta::NameValue(value) if value.path.is_ident("name") => match value.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(name),
                    ..
                }) => Some(name.value()),
                _ => None,
            },
            _ => None,
        })
}

/// The arguments the future takes over, which must be owned (the future is `'static`).
struct Arguments {
    names: Vec<syn::Ident>,
    /// Statements turning the wrapper's arguments into the future's (for `pass_module`).
    conversions: Vec<TokenStream2>,
}

fn owned_arguments(sig: &Signature, pass_module: bool) -> syn::Result<Arguments> {
    let mut names = Vec::new();
    let mut conversions = Vec::new();
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
    Ok(Arguments { names, conversions })
}

/// The wrapper's parameters: the function's, with a `pass_module` module borrowed.
fn wrapper_inputs(sig: &Signature, pass_module: bool) -> Vec<FnArg> {
    let mut inputs: Vec<FnArg> = sig
        .inputs
        .iter()
        .filter(|input| matches!(input, FnArg::Typed(_)))
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

/// The expression building the `Coroutine` (or `AsyncGenerator`) from `future`, whose output
/// has the function's declared type.
fn awaitable(
    options: &Options,
    output: &ReturnType,
    future: TokenStream2,
    qualname: &str,
) -> TokenStream2 {
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
        return quote!(::pyo3_async::AsyncGenerator::new(#stream) #backend);
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
    let future = in_runtime(options, quote!(async move { #converted }));
    let future = if options.allow_threads {
        quote!(::pyo3_async::AllowThreads::new(#future))
    } else {
        future
    };
    quote_spanned! {span=>
        ::pyo3_async::Coroutine::new(#future)
            .with_qualname(#qualname)
            .with_source(::core::file!(), ::core::line!())
            #backend
    }
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
fn returns_result(ty: &Type) -> bool {
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

//! The options of `#[pyo3_async::pyfunction]` and `#[pyo3_async::pymethods]`.

use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use quote::ToTokens;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Error, Meta, Token};

/// The options of both attributes: ours, and PyO3's, passed on.
#[derive(Default)]
pub(crate) struct Options {
    /// `asyncio` or `trio`: the backend, instead of detecting it.
    pub(crate) backend: Option<TokenStream2>,
    /// `allow_threads`: poll with the interpreter released.
    pub(crate) allow_threads: bool,
    /// `tokio`: poll inside the tokio runtime's context (feature `tokio` of pyo3-async).
    pub(crate) tokio: bool,
    /// `tokio = path`: the runtime, returned by the function at `path`, instead of the
    /// process-wide one.
    pub(crate) tokio_runtime: Option<syn::Expr>,
    /// `local`: the body's future need not be `Send`; it runs on the calling thread only.
    pub(crate) local: bool,
    /// `generator`: the function returns a stream, exported as an async generator.
    pub(crate) generator: bool,
    /// `name = "..."`, for `__name__` too.
    pub(crate) name: Option<String>,
    /// Options for `#[pyo3::pyfunction]` (`name`, `signature`, `text_signature`,
    /// `pass_module`, `crate`, `warn`), as written.
    pub(crate) pyo3: Vec<TokenStream2>,
    pub(crate) pass_module: bool,
    /// `crate = "..."`: PyO3's path, as PyO3's own option names it.
    pub(crate) krate: Option<Krate>,
}

/// PyO3's path given as `crate = "path"`.
pub(crate) struct Krate {
    pub(crate) string: syn::LitStr,
    pub(crate) path: syn::Path,
}

impl Krate {
    fn parse(value: &syn::Expr) -> syn::Result<Self> {
        match value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(string),
                ..
            }) => Ok(Krate {
                path: string.parse()?,
                string: string.clone(),
            }),
            _ => Err(Error::new(
                value.span(),
                "expected PyO3's path as a string: `crate = \"pyo3\"`",
            )),
        }
    }
}

impl Options {
    pub(crate) fn parse(args: TokenStream2) -> syn::Result<Self> {
        let items = Punctuated::<Item, Token![,]>::parse_terminated.parse2(args)?;
        let mut options = Options::default();
        for item in items {
            options.add_item(item)?;
        }
        Ok(options)
    }

    fn add_item(&mut self, item: Item) -> syn::Result<()> {
        match item {
            Item::Signature(tokens) => {
                self.pyo3.push(tokens);
                Ok(())
            }
            Item::Meta(meta) => self.add(meta),
        }
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
            ("tokio", Meta::NameValue(value)) => {
                self.tokio = true;
                self.tokio_runtime = Some(value.value.clone());
            }
            ("generator", Meta::Path(_)) => self.generator = true,
            ("local", Meta::Path(_)) => self.local = true,
            ("name", Meta::NameValue(value)) => {
                if let syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(name),
                    ..
                }) = &value.value
                {
                    self.name = Some(name.value());
                }
                self.pyo3.push(meta.into_token_stream());
            }
            ("pass_module", Meta::Path(_)) => {
                self.pass_module = true;
                self.pyo3.push(meta.into_token_stream());
            }
            ("crate", Meta::NameValue(value)) => self.krate = Some(Krate::parse(&value.value)?),
            ("signature" | "text_signature" | "warn", _) => {
                self.pyo3.push(meta.into_token_stream());
            }
            _ => return Err(Error::new(meta.span(), UNSUPPORTED)),
        }
        Ok(())
    }

    /// Our options out of `#[pyo3_async(...)]` attributes, which are removed.
    pub(crate) fn take_from(&mut self, attrs: &mut Vec<Attribute>) -> syn::Result<()> {
        let mut kept = Vec::with_capacity(attrs.len());
        for attr in attrs.drain(..) {
            if attr.path().is_ident("pyo3_async") {
                let items =
                    attr.parse_args_with(Punctuated::<Item, Token![,]>::parse_terminated)?;
                for item in items {
                    self.add_item(item)?;
                }
            } else {
                kept.push(attr);
            }
        }
        *attrs = kept;
        Ok(())
    }

    /// The path of PyO3's own attributes: `crate = ".."`, or `::pyo3` as PyO3 assumes.
    pub(crate) fn pyo3_path(&self) -> TokenStream2 {
        match &self.krate {
            Some(krate) => krate.path.to_token_stream(),
            None => quote!(::pyo3),
        }
    }
}

/// One option as written. PyO3's `signature = (a, *, key, /, ..)` is no Rust expression (as a
/// `Meta` would need it to be): it is kept as tokens, for PyO3 to read.
enum Item {
    Signature(TokenStream2),
    Meta(Meta),
}

impl Parse for Item {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let fork = input.fork();
        let is_signature = fork
            .parse::<syn::Ident>()
            .is_ok_and(|ident| ident == "signature")
            && fork.peek(Token![=])
            && fork.peek2(syn::token::Paren);
        if !is_signature {
            return input.parse().map(Item::Meta);
        }
        let ident: syn::Ident = input.parse()?;
        let eq: Token![=] = input.parse()?;
        let content;
        syn::parenthesized!(content in input);
        let parameters: TokenStream2 = content.parse()?;
        Ok(Item::Signature(quote!(#ident #eq (#parameters))))
    }
}

const UNSUPPORTED: &str = "unsupported option: expected `asyncio`, `trio`, `allow_threads`, \
    `tokio` (or `tokio = path::to_runtime`), `local`, `generator`, or a `#[pyo3::pyfunction]` option (`name`, `signature`, `text_signature`, \
    `pass_module`, `crate`, `warn`)";

/// PyO3's options for its `#[pyfunction]`, `crate` among them.
pub(crate) fn pyo3_options(options: &Options) -> TokenStream2 {
    let krate = options.krate.as_ref().map(|krate| {
        let string = &krate.string;
        quote!(crate = #string)
    });
    let pyo3_options: Vec<_> = options.pyo3.iter().cloned().chain(krate).collect();
    if pyo3_options.is_empty() {
        quote!()
    } else {
        quote!((#(#pyo3_options),*))
    }
}

/// The `crate = ".."` of a `#[pyo3(...)]` attribute on an `impl` block, as a path.
pub(crate) fn block_crate(attrs: &[Attribute]) -> syn::Result<Option<syn::Path>> {
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("pyo3")) {
        let options = attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
        for option in options {
            if let Meta::NameValue(value) = option {
                if value.path.is_ident("crate") {
                    return Krate::parse(&value.value).map(|krate| Some(krate.path));
                }
            }
        }
    }
    Ok(None)
}

/// The `name = "..."` of a `#[pyo3(...)]` attribute, if any.
pub(crate) fn pyo3_name(attrs: &[Attribute]) -> Option<String> {
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

/// Refuses generic parameters by name: Python calls one concrete function, and the body's
/// types must be known where the macro builds the coroutine.
pub(crate) fn refuse_generics(generics: &syn::Generics, what: &str) -> syn::Result<()> {
    match generics.params.first() {
        Some(param) => Err(Error::new(
            param.span(),
            format!(
                "{what} cannot be generic: Python calls one concrete function; write one per \
                 type (or take `Py<PyAny>` and extract inside)"
            ),
        )),
        None => Ok(()),
    }
}

//! Attribute macros of `pyo3-async`; use them through `pyo3_async::pyfunction` and
//! `pyo3_async::pymethods`, `pyo3_async::main` and `pyo3_async::test`, where they are
//! documented.

mod attributes;
mod awaitable;
mod entry;
mod export;
mod options;

use proc_macro::TokenStream;
use syn::{ItemFn, ItemImpl};

use export::{expand_function, expand_methods};
use options::Options;

/// `#[pyo3_async::pyfunction(options)]` on an `async fn`.
#[proc_macro_attribute]
pub fn pyfunction(args: TokenStream, item: TokenStream) -> TokenStream {
    let function: ItemFn = match parse(item) {
        Ok(function) => function,
        Err(error) => return error,
    };
    let expanded =
        Options::parse(args.into()).and_then(|options| expand_function(options, function.clone()));
    // The function stays, as a plain one, next to the error: what it uses (imports, helpers)
    // is used, so that the error is the only thing reported.
    or_unexported(expanded, || export::unexported(function))
}

/// `#[pyo3_async::pymethods]` on an `impl` block of a `#[pyclass]`.
#[proc_macro_attribute]
pub fn pymethods(args: TokenStream, item: TokenStream) -> TokenStream {
    let block: ItemImpl = match parse(item) {
        Ok(block) => block,
        Err(error) => return error,
    };
    let expanded =
        Options::parse(args.into()).and_then(|options| expand_methods(options, block.clone()));
    // As for `pyfunction`: the block stays, plain, next to an error.
    or_unexported(expanded, || export::unexported_methods(block))
}

/// The item an attribute is on, or the compile error that says why it is no such item.
fn parse<T: syn::parse::Parse>(item: TokenStream) -> Result<T, TokenStream> {
    syn::parse::<T>(item).map_err(|error| error.into_compile_error().into())
}

/// The expansion, or the error next to what is left of the item (see `export::unexported`).
fn or_unexported(
    expanded: syn::Result<proc_macro2::TokenStream>,
    left: impl FnOnce() -> proc_macro2::TokenStream,
) -> TokenStream {
    match expanded {
        Ok(expanded) => expanded.into(),
        Err(error) => {
            let error = error.into_compile_error();
            let left = left();
            quote::quote!(#error #left).into()
        }
    }
}

/// `#[pyo3_async::main]` on `async fn main()`: the body runs as the main task of a Python
/// event loop (`asyncio`, `uvloop` or `trio`; asyncio by default), inside the tokio runtime's
/// context with `tokio`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    let function: ItemFn = match parse(item) {
        Ok(function) => function,
        Err(error) => return error,
    };
    let expanded = entry::loops(args.into(), entry::Expect::One)
        .and_then(|entry| entry::expand_main(entry, function.clone()));
    or_unexported(expanded, || entry::unexported_main(function))
}

/// `#[pyo3_async::test]` on an `async fn`: a test per loop (`asyncio`, `uvloop`, `trio`; all
/// three by default), each running the body as the main task of a new loop of that kind
/// (inside the tokio runtime's context with `tokio`).
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    let function: ItemFn = match parse(item) {
        Ok(function) => function,
        Err(error) => return error,
    };
    let expanded = entry::loops(args.into(), entry::Expect::Many)
        .and_then(|entry| entry::expand_test(entry, function.clone()));
    or_unexported(expanded, || export::unexported(function))
}

//! Compiles the README's Rust examples into the test module (`readme` submodule), so that
//! `test_readme.py` runs every function and class they export, not only compiles them.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    println!("cargo:rerun-if-changed={}", readme_path.display());
    let readme = std::fs::read_to_string(&readme_path).expect("README.md is readable");
    let mut modules = String::new();
    let mut registrations = String::new();
    let mut exported = Vec::new();
    for (index, block) in rust_blocks(&readme).into_iter().enumerate() {
        let module = format!("example_{}", index + 1);
        // Each example registers its own exports: its items are private to its module.
        let mut own = String::new();
        for (kind, name) in exports(&block) {
            assert!(
                !exported.contains(&name),
                "README examples export `{name}` twice: test_readme.py could not tell them apart"
            );
            exported.push(name.clone());
            match kind {
                Export::Function => writeln!(
                    own,
                    "        readme.add_function(pyo3::wrap_pyfunction!({name}, readme)?)?;"
                ),
                Export::Class => writeln!(own, "        readme.add_class::<{name}>()?;"),
            }
            .unwrap();
        }
        writeln!(
            modules,
            "#[allow(dead_code, unused_imports, unused_variables, clippy::all)]"
        )
        .unwrap();
        writeln!(
            modules,
            "mod {module} {{\n{block}\n\
             pub(super) fn __register(readme: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {{\n\
             \x20       use pyo3::types::PyModuleMethods;\n\
             {own}        Ok(())\n    }}\n}}"
        )
        .unwrap();
        writeln!(registrations, "    {module}::__register(&readme)?;").unwrap();
    }
    let code = format!(
        "{modules}\n/// The `readme` submodule: what the README's examples export.\n\
         pub(crate) fn register(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {{\n\
         \x20   use pyo3::types::PyModuleMethods;\n\
         \x20   let readme = pyo3::types::PyModule::new(m.py(), \"readme\")?;\n\
         {registrations}    m.add_submodule(&readme)\n}}\n"
    );
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("readme.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}

/// The ```rust blocks, with rustdoc's hidden-line markers (`# `) taken off.
fn rust_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match &mut current {
            None if line.trim_start() == "```rust" => current = Some(String::new()),
            Some(_) if line.trim_start() == "```" => blocks.extend(current.take()),
            Some(block) => {
                let line = match line.strip_prefix("# ") {
                    Some(hidden) => hidden,
                    None if line == "#" => "",
                    None => line,
                };
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

enum Export {
    Function,
    Class,
}

/// The names after `#[pyfunction]`-like and `#[pyclass]` attributes.
fn exports(block: &str) -> Vec<(Export, String)> {
    let mut found = Vec::new();
    let mut pending = None;
    for line in block.lines().map(str::trim) {
        if line.starts_with("#[pyfunction") || line.starts_with("#[pyo3_async::pyfunction") {
            pending = Some(Export::Function);
        } else if line.starts_with("#[pyclass") {
            pending = Some(Export::Class);
        } else if let Some(kind) = pending.take() {
            let words: Vec<&str> = line
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .collect();
            let keyword = match kind {
                Export::Function => "fn",
                Export::Class => "struct",
            };
            match words.iter().position(|word| *word == keyword) {
                Some(at) => found.push((kind, words[at + 1].to_string())),
                // Another attribute or a doc comment in between.
                None => pending = Some(kind),
            }
        }
    }
    found
}

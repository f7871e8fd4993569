#!/usr/bin/env python3
"""Checks the crate's layering: no import cycle between the files of `src/`, and every
top-level module imports only the layers below its own (`LAYERS`, bottom-up; ARCHITECTURE.md
describes them). Prints each violation and exits 1; prints the layers and exits 0 otherwise.

An import is any `crate::a::b` or `super::x` path in code (comments excluded), or a path
through a child module that the file declares (`mod x;` then `x::y`).
"""

import pathlib
import re
import sys

# The layers, bottom-up: each top-level module of `src/` may import only those before it.
LAYERS = [
    "refcount",
    "sync",
    "gil_cell",
    "install_once",
    "lazy",
    "visit",
    "census",
    "exit_guard",
    "fork",
    "thread_state",
    "glue",
    "home",
    "task",
    "backend",
    "waker",
    "delegation",
    "rust_to_py",
    "py_to_rust",
    "stats",
    "tokio",
    "embed",
    "guide",
]

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
PATH = re.compile(r"\b(crate|super|self)((?:::\w+)+)")
MOD = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.M)


def module_path(file):
    """`src/a/b.rs` -> ('a', 'b'); `src/a/mod.rs` -> ('a',); `src/lib.rs` -> ()."""
    parts = list(file.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts.pop()
    return tuple(parts)


def code_of(file):
    text = file.read_text()
    text = re.sub(r"//[^\n]*", "", text)  # comments and doc comments
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)  # strings


def main():
    files = {module_path(f): f for f in SRC.rglob("*.rs")}

    def resolve(path):
        """The deepest module file that `path` (a tuple of names) goes through."""
        for end in range(len(path), 0, -1):
            if path[:end] in files:
                return path[:end]
        return None

    edges = {}
    for module, file in files.items():
        code = code_of(file)
        targets = set()
        for root, rest in PATH.findall(code):
            names = tuple(rest.split("::")[1:])
            if root == "crate":
                target = resolve(names)
            elif root == "super":
                parent = module[:-1] if not file.name == "mod.rs" else module[:-1]
                target = resolve(parent + names)
            else:
                target = resolve(module + names)
            if target is not None and target != module:
                targets.add(target)
        for child in MOD.findall(code):
            if re.search(rf"\b{child}::", code.replace(f"mod {child};", "")):
                target = resolve(module + (child,))
                if target is not None:
                    targets.add(target)
        edges[module] = targets

    # Import cycles between files (Tarjan's strongly connected components).
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(component)

    sys.setrecursionlimit(10_000)
    for node in files:
        if node not in index:
            visit(node)

    name = lambda module: "::".join(module) or "lib"
    failed = False
    for cycle in cycles:
        failed = True
        print("import cycle:", " <-> ".join(sorted(name(m) for m in cycle)))

    layers = LAYERS
    rank = {layer: i for i, layer in enumerate(layers)}
    for module in files:
        if module and module[0] not in rank:
            failed = True
            print(f"{name(module)} belongs to no layer: add it to LAYERS in tools/layers.py")
    for module, targets in sorted(edges.items()):
        if not module:
            continue
        for target in sorted(targets):
            if not target or target[0] == module[0]:
                continue
            if rank.get(target[0], len(rank)) > rank.get(module[0], len(rank)):
                failed = True
                print(f"layer violation: {name(module)} imports {name(target)}, a layer above it")
    if failed:
        return 1
    print("layers (bottom-up):", " < ".join(layers), f"- {len(files)} files, no import cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())

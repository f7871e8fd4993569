#!/usr/bin/env bash
# Builds the benchmark contender of pyo3-async as it was at revision $1, as the Python module
# `bench_baseline`, into the active virtualenv: `make bench BASELINE=<rev>` then measures it
# beside the current tree, in the same processes (benches/run.py).
set -euo pipefail
revision=$1
root=$(git rev-parse --show-toplevel)
tree=$root/target/bench-baseline
rm -rf "$tree"
mkdir -p "$tree"
git -C "$root" archive "$revision" | tar -x -C "$tree"
ours=$tree/benches/contenders/ours
sed -i 's/bench_ours/bench_baseline/; s/bench-ours/bench-baseline/' "$ours/Cargo.toml" "$ours/pyproject.toml"
sed -i 's/^fn bench_ours(/fn bench_baseline(/' "$ours/src/lib.rs"
# The baseline's own lock file, and its own target directory (a separate build).
(cd "$ours" && maturin develop --quiet --release)

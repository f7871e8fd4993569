#!/usr/bin/env bash
# Builds the benchmark contender of pyo3-async as the Python module $1, into the active
# virtualenv, from a copy of the crate: at git revision $2, or the working tree if $2 is ".".
# Further arguments go to `maturin develop` (`--features pyo3/abi3-py310` for the abi3 build).
# `make bench` then measures it beside the current build, in the same processes (benches/run.py).
#
# The contender's code is today's wherever the old crate builds it, so a baseline differs from
# the current build by the crate alone; else the revision's own contender is used.
set -euo pipefail
module=$1
revision=$2
shift 2
root=$(git rev-parse --show-toplevel)
tree=$root/target/bench-$module
# The build outside the copy, so that a rerun only rebuilds what changed.
# `BENCH_BUILD_DIR` (relative to the root) gives each interpreter its own (tools/bench.sh).
export CARGO_TARGET_DIR=$root/${BENCH_BUILD_DIR:-target/bench-build}/$module
rm -rf "$tree"
mkdir -p "$tree"
# Extracted files get the time of extraction (`tar -m`): with the commit's time, a revision
# older than the last one built here would look older than its build, and cargo would keep
# that build.
extract() {
    if [ "$revision" = . ]; then
        (cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar -c) | tar -x -m -C "$tree"
    else
        git -C "$root" archive "$revision" | tar -x -m -C "$tree"
    fi
}
rename() {
    local ours=$tree/benches/contenders/ours
    sed -i "s/bench_ours/$module/; s/bench-ours/${module//_/-}/" "$ours/Cargo.toml" "$ours/pyproject.toml"
    sed -i "s/^fn bench_ours(/fn $module(/" "$ours/src/lib.rs"
}
extract
if [ "$revision" != . ]; then
    cp -r "$root/benches/contenders/ours/." "$tree/benches/contenders/ours/"
    cp "$root/benches/Cargo.toml" "$tree/benches/Cargo.toml"
fi
rename
if ! (cd "$tree/benches/contenders/ours" && maturin develop --quiet --release "$@"); then
    echo "today's contender does not build on $revision: using its own" >&2
    rm -rf "$tree" && mkdir -p "$tree" && extract && rename
    (cd "$tree/benches/contenders/ours" && maturin develop --quiet --release "$@")
fi

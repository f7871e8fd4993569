#!/usr/bin/env bash
# `make bench`, for one CPython: builds every contender into that interpreter's venv and runs
# benches/run.py there, which leaves its table in target/bench-results/ (run.py --report then
# writes BENCHMARKS.md from every table of the run).
#
# Usage: tools/bench.sh PYTHON [BASELINE]
#   PYTHON    the interpreter; the main venv's (.venv/bin/python) is used as it is, any other
#             gets a venv of its own (.venv-bench-<version>) with the pinned tools
#   BASELINE  a git revision of this crate to measure beside the current build
#
# Each interpreter builds in a target directory of its own (pyo3's build depends on it). A
# peer that does not build for an interpreter (pyo3-async 0.3.2's pyo3 0.20 stops at 3.12) is
# retried with pyo3's abi3 forward compatibility, else left out: its cells say n/a.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$1
baseline=${2:-}
version=$("$python" -c 'import platform; print(platform.python_version())')
case $python in
*-debian/*) name=$version-debian ;;
*) name=$version ;;
esac
if [ "$python" -ef .venv/bin/python ]; then
    # The main venv builds where a plain `maturin develop` of a contender does.
    venv=.venv
    build=
else
    build=target/bench-py$name
    venv=.venv-bench-$name
    if [ ! -f "$venv/.installed" ] || [ requirements-dev.txt -nt "$venv/.installed" ]; then
        "$python" -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements-dev.txt \
            -r benches/requirements.txt
        touch "$venv/.installed"
    fi
fi
export VIRTUAL_ENV=$PWD/$venv PATH=$PWD/$venv/bin:$PATH PYO3_PYTHON=$PWD/$venv/bin/python
echo "== Python $name ($venv)" >&2
# Builds contender $1 into the venv, in $build's target directory for it (suffix $2).
develop() {
    (
        cd "benches/contenders/$1"
        if [ -n "$build" ]; then export CARGO_TARGET_DIR=$PWD/../../../$build/$1$2; fi
        maturin develop --quiet --release
    )
}
notes=
for contender in ours pyo3 runtimes seed; do
    if develop $contender ""; then
        continue
    fi
    if PYO3_USE_ABI3_FORWARD_COMPATIBILITY=1 develop $contender -abi3; then
        echo "   $contender: built with abi3 forward compatibility for $name" >&2
        notes+="bench-$contender is built with pyo3's abi3 forward compatibility (its pyo3 predates this Python). "
    else
        echo "   $contender: does not build for $name, left out" >&2
        pip uninstall --quiet --yes "bench-$contender" 2>/dev/null || true
    fi
done
BENCH_BUILD_DIR=$build tools/bench_variant.sh bench_abi3 . --features pyo3/abi3-py310
if [ -n "$baseline" ]; then
    BENCH_BUILD_DIR=$build tools/bench_variant.sh bench_baseline "$baseline"
fi
BENCH_NOTES=$notes BENCH_BASELINE=$baseline BENCH_RESULTS=target/bench-results python benches/run.py

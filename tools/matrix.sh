#!/usr/bin/env bash
# `make matrix`: the Rust tests and the pytest suite on other CPythons, a line per version.
#
# Usage: tools/matrix.sh [PYTHON...]   (interpreters; by default every CPython >= 3.10 that
# pyenv has, except the main venv's version, which `make test` has just run). Each version gets its own venv (.venv-<version>) and
# target directory (target/py<version>): pyo3's build depends on the interpreter, so one shared
# target directory would rebuild everything at each switch. Logs: target/matrix/<version>.log.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/matrix
if [ $# -eq 0 ]; then
    main=$(.venv/bin/python -c 'import platform; print(platform.python_version())' 2>/dev/null)
    for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*; do
        version=${dir##*/}
        # CPython releases from 3.10 (no free-threaded `t` builds, no pre-releases).
        if [[ $version =~ ^3\.(1[0-9]|[2-9][0-9])\.[0-9]+$ ]] && [ "$version" != "$main" ]; then
            set -- "$@" "$dir/bin/python"
        fi
    done
    if [ $# -eq 0 ]; then
        echo "matrix: no other CPython >= 3.10 under ${PYENV_ROOT:-$HOME/.pyenv}/versions"
        exit 0
    fi
fi
status=0
for python in "$@"; do
    version=$("$python" -c 'import platform; print(platform.python_version())')
    venv=.venv-$version
    log=target/matrix/$version.log
    started=$SECONDS
    (
        set -e
        if [ ! -f "$venv/.installed" ] || [ requirements-dev.txt -nt "$venv/.installed" ]; then
            "$python" -m venv "$venv"
            "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements-dev.txt
            touch "$venv/.installed"
        fi
        export VIRTUAL_ENV=$PWD/$venv PATH=$PWD/$venv/bin:$PATH PYO3_PYTHON=$PWD/$venv/bin/python
        export CARGO_TARGET_DIR=target/py$version
        # Doctests are the main run's: one binary each, they would double this run's time.
        cargo test --workspace --features pyo3-async/tokio --lib --bins --tests
        maturin develop --quiet -m pytests/Cargo.toml
        maturin develop --quiet -m examples/streaming/Cargo.toml
        python -m pytest -q -p no:cacheprovider pytests/tests
        if [[ $version == 3.10.* ]]; then
            # The abi3 build claims every CPython from 3.10 (`make abi3` ran it on the main
            # venv's): here it meets the oldest, where `am_send` needs a type flag.
            CARGO_TARGET_DIR=target/py$version-abi3 \
                maturin develop --quiet -m pytests/Cargo.toml --features pyo3/abi3-py310
            python -m pytest -q -p no:cacheprovider pytests/tests
        fi
    ) >"$log" 2>&1
    outcome=$?
    rust=$(grep -E '^test result:' "$log" | awk '{passed += $4; failed += $6} END {print passed " passed, " failed " failed"}')
    # One line per pytest run (3.10's second is the abi3 build's).
    pytest=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed)' "$log" | tr -d '=' | sed 's/^ *//; s/ *$//' | paste -sd ';' - | sed 's/;/; abi3: /')
    if [ "$outcome" -eq 0 ]; then
        echo "Python $version: ok (Rust tests: $rust; pytest: $pytest) in $((SECONDS - started)) s"
    else
        status=1
        echo "Python $version: FAILED (Rust tests: $rust; pytest: ${pytest:-not run}); the end of $log:"
        tail -40 "$log"
    fi
done
exit $status

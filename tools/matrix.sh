#!/usr/bin/env bash
# `make matrix`: the Rust tests and the pytest suite on other CPythons, a line per version.
#
# Usage: tools/matrix.sh [PYTHON...]   (interpreters; by default every CPython >= 3.10 that
# pyenv has, except the main venv's version, which `make test` has just run). Each version gets
# its own venv (.venv-<version>) and target directory (target/py<version>): pyo3's build depends
# on the interpreter, so one shared target directory would rebuild everything at each switch.
# Logs: target/matrix/<version>.log.
#
# Debian's builds (`<version>-debian`, from tools/debian-python.sh: 3.14, 3.15) carry a C library
# of their own, so no Rust binary links their libpython: they run the pytest suite only, with
# `-W error::DeprecationWarning` (3.14 deprecates the event-loop policies that older code
# touches). The newest of them in $FULL_API (3.14 by default) gets the full-API build of the test
# module; every one gets the abi3 build (in target/abi3, where `make abi3` built it already).
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/matrix
if [ $# -eq 0 ]; then
    main=$(.venv/bin/python -c 'import platform; print(platform.python_version())' 2>/dev/null)
    for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*; do
        version=${dir##*/}
        # CPython releases from 3.10 (no free-threaded `t` builds, no pre-releases).
        if [[ $version =~ ^3\.(1[0-9]|[2-9][0-9])\.[0-9]+(-debian)?$ ]] && [ "$version" != "$main" ]; then
            set -- "$@" "$dir/bin/python"
        fi
    done
    for minor in 3.14 3.15; do
        if ! compgen -G "${PYENV_ROOT:-$HOME/.pyenv}/versions/$minor.*" >/dev/null; then
            echo "Python $minor: skipped, not installed (tools/debian-python.sh $minor installs it)"
        fi
    done
    if [ $# -eq 0 ]; then
        echo "matrix: no other CPython >= 3.10 under ${PYENV_ROOT:-$HOME/.pyenv}/versions"
        exit 0
    fi
fi
FULL_API=${FULL_API:-3.14}
status=0
# A pytest run, bounded as the Makefile's $(PYTEST) is (see there).
pytest() {
    timeout --signal=ABRT --kill-after=60 1800 python -X faulthandler -m pytest "$@"
}
for python in "$@"; do
    version=$("$python" -c 'import platform; print(platform.python_version())')
    debian=
    name=$version
    if [[ $python == *-debian/* ]]; then
        # Its own venv, log and target directory: pyenv may hold a build of the same version.
        debian=yes
        name=$version-debian
    fi
    venv=.venv-$name
    log=target/matrix/$name.log
    started=$SECONDS
    if [ -n "${PYO3_ASYNC_CI_START:-}" ]; then
        # In CI (.ci/run), where a run that outlives its deadline shows only its last lines.
        echo "Python $name: starting, $(($(date +%s) - PYO3_ASYNC_CI_START)) s into the CI run"
    fi
    (
        set -e
        if [ ! -f "$venv/.installed" ] || [ requirements-dev.txt -nt "$venv/.installed" ]; then
            "$python" -m venv "$venv"
            "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements-dev.txt
            touch "$venv/.installed"
        fi
        export VIRTUAL_ENV=$PWD/$venv PATH=$PWD/$venv/bin:$PATH PYO3_PYTHON=$PWD/$venv/bin/python
        export CARGO_TARGET_DIR=target/py$name
        if [ -n "$debian" ]; then
            # The abi3 wheels (the test module, the streaming example), in `make abi3`'s target
            # directory, into a folder of this run's own: exactly these are installed.
            wheels=target/matrix/wheels-$name
            rm -rf "$wheels"
            for crate in pytests examples/streaming; do
                CARGO_TARGET_DIR=target/abi3 maturin build --quiet -m $crate/Cargo.toml \
                    --features pyo3/abi3-py310 --interpreter "$PWD/$venv/bin/python" -o "$wheels"
            done
            pip install --quiet --force-reinstall --no-deps "$wheels"/*.whl
            if [ "${version%.*}" = "$FULL_API" ]; then
                maturin develop --quiet -m pytests/Cargo.toml
                pytest -q -p no:cacheprovider -W error::DeprecationWarning pytests/tests
                pip install --quiet --force-reinstall --no-deps "$wheels"/pyo3_async_pytests-*.whl
            fi
            pytest -q -p no:cacheprovider -W error::DeprecationWarning pytests/tests
            exit 0
        fi
        # Doctests are the main run's: one binary each, they would double this run's time.
        cargo test --workspace --features pyo3-async/tokio --lib --bins --tests
        maturin develop --quiet -m pytests/Cargo.toml
        maturin develop --quiet -m examples/streaming/Cargo.toml
        pytest -q -p no:cacheprovider pytests/tests
        if [[ $version == 3.10.* ]]; then
            # The abi3 build claims every CPython from 3.10 (`make abi3` ran it on the main
            # venv's): here it meets the oldest, where `am_send` needs a type flag.
            CARGO_TARGET_DIR=target/py$version-abi3 \
                maturin develop --quiet -m pytests/Cargo.toml --features pyo3/abi3-py310
            pytest -q -p no:cacheprovider pytests/tests
        fi
    ) >"$log" 2>&1
    outcome=$?
    rust=$(grep -E '^test result:' "$log" | awk '{passed += $4; failed += $6} END {print passed " passed, " failed " failed"}')
    # One line per pytest run (the second, on 3.10 and Debian's builds, is the abi3 build's).
    pytest=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed)' "$log" | tr -d '=' | sed 's/^ *//; s/ *$//' | paste -sd ';' - | sed 's/;/; abi3: /')
    if [ -n "$debian" ]; then
        rust="none: Debian's libpython cannot be linked here"
    fi
    if [ "$outcome" -eq 0 ]; then
        echo "Python $name: ok (Rust tests: $rust; pytest: $pytest) in $((SECONDS - started)) s"
    else
        status=1
        echo "Python $name: FAILED (Rust tests: $rust; pytest: ${pytest:-not run}); the end of $log:"
        # A hung test ends the run with every thread's traceback, innermost call first (see
        # pytests/pyproject.toml): the test's own frames are at the top of the dump.
        grep -A 80 '^Timeout (' "$log" | head -80
        tail -40 "$log"
    fi
done
exit $status

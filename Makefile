# `make demo` runs the seed example on asyncio and trio; `make test` runs every check and test;
# `make bench` compares pyo3-async with its peers (BENCHMARKS.md, benchmarks.png).
# Both create the virtualenv (.venv) with maturin, pytest, trio, anyio and uvloop first.

PYTHON ?= python3
VENV ?= .venv
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(VIRTUAL_ENV)/bin:$(PATH)
# Embedded interpreters (Rust tests, doctests) and pyo3's build use the venv's Python.
export PYO3_PYTHON := $(VIRTUAL_ENV)/bin/python

.PHONY: demo test lint rust-test python-test abi3 matrix bench stress valgrind

# A pytest run, bounded: a test that hangs fails at once with every thread's traceback
# (pytests/pyproject.toml, 300 s a test), and so does a run that hangs outside any test (at
# the interpreter's exit, say): SIGABRT after 30 minutes, which `-X faulthandler` turns into a
# traceback of every thread. Without both, CI's own deadline would kill the run without a word.
PYTEST := timeout --signal=ABRT --kill-after=60 1800 python -X faulthandler -m pytest
# In CI (.ci/run), how far into the run a stage of `make test` starts.
CI_MARK = @if [ -n "$$PYO3_ASYNC_CI_START" ]; then \
	echo "make $@: starting, $$(($$(date +%s) - $$PYO3_ASYNC_CI_START)) s into the CI run"; fi

# The `rust-version` of Cargo.toml, which `make lint` builds with.
MSRV := $(shell sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

demo: $(VENV)/.installed
	maturin develop --quiet --release -m examples/seed/Cargo.toml
	python examples/seed/demo.py

test: lint rust-test python-test abi3 matrix

lint: $(VENV)/.installed
	$(CI_MARK)
	python3 tools/layers.py
	cargo fmt --all -- --check
	cargo clippy --quiet --workspace --all-targets --features pyo3-async/tokio -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps -p pyo3-async --features tokio
	# The code only the limited API compiles (`coroutine_wrapper`), in a target of its own.
	cargo clippy --quiet -p pyo3-async --all-targets --features tokio,pyo3/abi3-py310 \
		--target-dir target/abi3-lint -- -D warnings
	# No free-threaded CPython here: the crate type-checks against one (3.14t) described by a
	# pyo3 config file (ARCHITECTURE.md, "Free-threaded Python").
	PYO3_CONFIG_FILE=$(CURDIR)/tools/free-threaded.cfg cargo check --quiet -p pyo3-async \
		--features tokio --target-dir target/free-threaded
	# Nor a PyPy that runs the suite (README, "Pythons and platforms"): the crate is linted
	# against PyPy 3.11 as pyo3 describes it.
	PYO3_CONFIG_FILE=$(CURDIR)/tools/pypy.cfg cargo clippy --quiet -p pyo3-async \
		--features tokio --target-dir target/pypy -- -D warnings
	# The crates as crates.io would get them, built from their packages (a dry run of the
	# publication of both, the macros first).
	cargo publish --quiet --dry-run --allow-dirty -p pyo3-async-macros -p pyo3-async
	# Windows and macOS, linted on their own targets (the non-Unix wake signal on its real one);
	# pyo3 configures the full API for them from a Python version alone.
	rustup target add x86_64-pc-windows-msvc aarch64-apple-darwin 2>/dev/null
	for target in x86_64-pc-windows-msvc aarch64-apple-darwin; do \
		PYO3_CROSS_PYTHON_VERSION=3.12 cargo clippy --quiet -p pyo3-async --all-targets \
			--features tokio --target $$target --target-dir target/cross -- -D warnings || exit 1; \
	done
	# The oldest Rust the crates claim (`rust-version`), with that toolchain.
	rustup toolchain install --profile minimal $(MSRV) >/dev/null 2>&1
	cargo +$(MSRV) check --quiet -p pyo3-async -p pyo3-async-macros --features pyo3-async/tokio \
		--target-dir target/msrv

rust-test: $(VENV)/.installed
	$(CI_MARK)
	cargo test --quiet --workspace --features pyo3-async/tokio
	# The `tokio-default` feature changes what every entry point does: its own build.
	cargo test --quiet --features tokio-default --test tokio_default
	# Model checks of the waker's and the job queue's state machines (src/sync.rs), in a
	# target directory of their own: the cfg rebuilds everything.
	RUSTFLAGS="--cfg pyo3_async_loom" CARGO_TARGET_DIR=target/loom \
		cargo test --quiet --release -p pyo3-async --lib loom

python-test: $(VENV)/.installed
	$(CI_MARK)
	maturin develop --quiet -m pytests/Cargo.toml
	maturin develop --quiet -m examples/streaming/Cargo.toml
	maturin develop --quiet -m examples/seed/Cargo.toml
	$(PYTEST) -q pytests/tests
	# The example modules' type stubs, against the modules and the scripts that use them.
	python -m mypy.stubtest --allowlist tools/stubtest-allowlist.txt example streaming pyo3_async_pytests
	python -m mypy --check-untyped-defs examples/seed/demo.py examples/streaming/serve.py
	# The portable wake signal (loopback TCP, as off Unix), on the suites that lean on it.
	PYO3_ASYNC_LOOPBACK_SIGNAL=1 $(PYTEST) -q pytests/tests/test_core.py \
		pytests/tests/test_delegation_rule.py pytests/tests/test_py_async_iter.py

# The test module built with the limited API (one wheel for every CPython >= 3.10, as most
# extensions ship) and the pytest suite on it; `make python-test` installs the full build again.
abi3: $(VENV)/.installed
	$(CI_MARK)
	CARGO_TARGET_DIR=target/abi3 maturin develop --quiet -m pytests/Cargo.toml \
		--features pyo3/abi3-py310
	$(PYTEST) -q pytests/tests

# The Rust tests and the pytest suite on every other CPython >= 3.10 of pyenv (a venv and a
# target directory each; tools/matrix.sh). `make matrix PYTHONS=python3.12` picks some.
matrix: $(VENV)/.installed
	$(CI_MARK)
	tools/matrix.sh $(PYTHONS)

$(VENV)/.bench-installed: $(VENV)/.installed benches/requirements.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r benches/requirements.txt
	touch $@

# The CPythons `make bench` measures on: the main venv's, and Debian's 3.14 build
# (tools/debian-python.sh 3.14 installs it), which changed asyncio's task internals and is what
# new users run. A table per Python in BENCHMARKS.md, a panel each in benchmarks.png.
BENCH_PYTHONS ?= $(VENV)/bin/python $(lastword $(sort $(wildcard $(HOME)/.pyenv/versions/3.14.*-debian/bin/python)))

# `make bench BASELINE=<git revision>` also measures pyo3-async as it was at that revision.
bench: $(VENV)/.bench-installed
	rm -rf target/bench-results
	for python in $(BENCH_PYTHONS); do tools/bench.sh $$python $(BASELINE) || exit 1; done

# The stress suite at full size (`make test` runs it reduced): test_stress.py (10k races per
# loop, 10k-future storms, 1M cycles per bridge type, 1000 exiting processes, 100k tokio tasks
# each seeing only its own context), and the core's
# and delegation's scenarios at stress size (loop churn, 100k-item streams, 100k delegated
# awaits, 10k drops racing pulls).
stress: $(VENV)/.installed
	maturin develop --quiet --release -m pytests/Cargo.toml
	PYO3_ASYNC_STRESS=full python -m pytest -q -s -o faulthandler_timeout=3000 \
		pytests/tests/test_stress.py \
		pytests/tests/test_core.py pytests/tests/test_delegation_rule.py

# Memory safety: the pytest suite (reduced stress) and the Rust tests under valgrind memcheck,
# failing on any invalid read, write or free. Leak and uninitialised-value reports are off:
# CPython keeps memory until exit and reads bytes valgrind cannot follow (getrandom).
VALGRIND := valgrind --quiet --error-exitcode=99 --leak-check=no --undef-value-errors=no
valgrind: $(VENV)/.installed
	maturin develop --quiet -m pytests/Cargo.toml
	maturin develop --quiet -m examples/streaming/Cargo.toml
	PYTHONMALLOC=malloc $(VALGRIND) python -m pytest -q -p no:cacheprovider pytests/tests \
		-o faulthandler_timeout=6000 -k "not exit_with_work_in_flight"
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$(VALGRIND)" PYTHONMALLOC=malloc \
		cargo test -p pyo3-async --lib --test rust_to_py --test py_to_rust

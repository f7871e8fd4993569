import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import time
import weakref

import anyio
import anyio.lowlevel
import pytest

import pyo3_async_pytests

# `make abi3` builds the test module with the limited API, which cannot tell whether a thread
# is attached: wake-ups on the loop thread then go through the loop's home, and an attached
# thread's late `atexit` work is refused like a foreign thread's (ARCHITECTURE.md, "abi3").
ABI3 = pyo3_async_pytests.pyo3_async_pytests.__file__.endswith(".abi3.so")
full_api_only = pytest.mark.skipif(ABI3, reason="the limited API cannot tell attached threads")

# `make stress` (PYO3_ASYNC_STRESS=full) runs the stress-sized scenarios at full size.
STRESS_FULL = os.environ.get("PYO3_ASYNC_STRESS") == "full"


def sized(reduced, full):
    """A scenario's size: `full` under `make stress`, `reduced` in `make test`."""
    return full if STRESS_FULL else reduced


async def until(condition, passes=10_000):
    """Yields to the event loop (no timer) until `condition()` holds."""
    for _ in range(passes):
        if condition():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("condition never held")


async def park_once(value=None):
    """Parks a Rust coroutine once on the running asyncio loop, then wakes it from the loop's
    thread: the loop's home is made and watched when this returns. Not a short timer: one may
    be due by the end of the coroutine's first poll on a loaded machine, and never park."""
    import pyo3_async_pytests as m

    trigger = m.Trigger()
    task = asyncio.ensure_future(trigger.wait(value))
    await until(lambda: task._fut_waiter is not None)
    trigger.fire()
    return await task


async def until_threads(condition, seconds=120):
    """`until`, for a condition that other threads make true: keeps yielding to the loop for
    as long as they may take (slow machines, valgrind), not a fixed number of passes."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {seconds} s")
        await anyio.lowlevel.checkpoint()


def load_streaming_example(name):
    """`examples/streaming/serve.py` as a module named `name`: its servers (uvicorn,
    hypercorn) and its demo, for the tests that serve real clients."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "streaming" / "serve.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(script, timeout=60, forbidden=("panic", "fatal python error", "Traceback")):
    """Runs `script` (dedented) in a fresh interpreter: it must exit with 0 and write none of
    `forbidden` to stderr (case-insensitive). Returns what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    for word in forbidden:
        assert word.lower() not in done.stderr.lower(), done.stderr
    return done.stdout


def run_isolated(scenario, *args, anyio_backend=None, timeout=60):
    """Runs `scenario(*args)`, a module-level function of a test module here, in a fresh
    interpreter: on a fresh `anyio.run` of `anyio_backend` when given, else called as is. A trio
    run corrupted by a bug hangs its runner: that must fail the scenario, not the suite.
    Returns what it printed, which ends with "done"."""
    call = f"scenarios.{scenario.__name__}(*{args!r})"
    if anyio_backend is not None:
        backend, options = anyio_backend if isinstance(anyio_backend, tuple) else (anyio_backend, {})
        call = (
            f"anyio.run(scenarios.{scenario.__name__}, *{args!r}, backend={backend!r}, "
            f"backend_options={options!r})"
        )
    out = run_script(
        f"""
        import sys
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        import anyio
        import {scenario.__module__} as scenarios

        {call}
        print("done", flush=True)
        """,
        timeout=timeout,
    )
    assert out.endswith("done\n"), out
    return out


ASYNCIO_ONLY = "trio's runner holds every task until it ends: a trio task is never forgotten"


def forgotten_tasks(loop_name):
    """For a test that forgets tasks on purpose: asyncio only, and the loop's report of each
    ("Task was destroyed but it is pending!", native and Rust coroutines alike) silenced."""
    if loop_name == "trio":
        pytest.skip(ASYNCIO_ONLY)
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)


async def start_forgotten(make, count):
    """`count` tasks, each running `make()`, parked after their first step, with no reference
    left but their own cycles; weak references to the tasks."""
    tasks = [asyncio.ensure_future(make()) for _ in range(count)]
    refs = [weakref.ref(task) for task in tasks]
    # The tasks take their first steps in order, on the loop's next pass: once the last one
    # waits on a future, every one does.
    last = tasks[-1]
    await until(lambda: last._fut_waiter is not None)
    del tasks, last
    return refs


def freed(refs):
    """How many of the weakly referenced objects a full collection has freed."""
    gc.collect()
    return sum(ref() is None for ref in refs)


async def native_fail_after(k, exception):
    """The native twin of `fail_after`: yields 0..k, suspends once, raises `exception`."""
    import anyio.lowlevel

    for i in range(k):
        yield i
    await anyio.lowlevel.checkpoint()
    raise exception

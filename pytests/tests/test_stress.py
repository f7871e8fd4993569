"""The stress and fault suite (issue 7): cancellations racing completions in both directions,
thread storms of wakes, leaks over many cycles, interpreter exit with work in flight.

CI runs it at a reduced size; `make stress` runs it at full size (PYO3_ASYNC_STRESS=full):
10k races per loop, 10k futures in a storm, 1M cycles per bridge type, 1000 exiting processes.
Every test also fails on anything printed or reported behind its back: unraisable exceptions,
loop exception-handler reports ("Task exception was never retrieved"), asyncio debug warnings.
"""

import asyncio
import collections
import contextvars
import gc
import os
import random
import subprocess
import sys
import weakref

import anyio
import anyio.lowlevel
import pytest

import pyo3_async_pytests as m
from helpers import until, until_threads

pytestmark = pytest.mark.anyio

FULL = os.environ.get("PYO3_ASYNC_STRESS") == "full"
RACES = 10_000 if FULL else 500
STORM = 10_000 if FULL else 2_000
CYCLES = 1_000_000 if FULL else 20_000
PROCESSES = 1000 if FULL else 100
CONTEXT_TASKS = 100_000 if FULL else 2_000
EXIT_SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "stress", "exit_race.py")


@pytest.fixture
async def problems(loop_name):
    """Collects what would otherwise only be printed, in asyncio debug mode; the test asserts
    it stays empty."""
    async for reported in collect_problems(loop_name, debug=True):
        yield reported


@pytest.fixture
async def quiet(loop_name):
    """`problems`, without asyncio's debug mode (it slows the million-cycle runs down)."""
    async for reported in collect_problems(loop_name, debug=False):
        yield reported


async def collect_problems(loop_name, debug):
    reported = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: reported.append(("unraisable", unraisable.exc_value))
    if loop_name != "trio":
        loop = asyncio.get_running_loop()
        loop.set_debug(debug)
        loop.slow_callback_duration = 10  # debug mode, without slowness reports on a busy VM
        loop.set_exception_handler(lambda _, context: reported.append(("loop", context)))
    yield reported
    gc.collect()
    sys.unraisablehook = previous_hook


async def cancel_after(scope, checkpoints):
    for _ in range(checkpoints):
        await anyio.lowlevel.checkpoint()
    scope.cancel()


async def test_cancel_racing_rust_completion(loop_name, problems):
    """Rust → Python: a coroutine completed by a tokio worker, cancelled by an anyio scope
    after 0-2 loop passes. Either outcome is fine; anything else is not."""
    outcomes = collections.Counter()
    for i in range(RACES):
        result = None
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(cancel_after, scope, random.randrange(3))
                result = await (m.tokio_noop() if i % 2 else m.sleep(0, i))
        outcomes["cancelled" if scope.cancelled_caught else "completed"] += 1
        assert scope.cancelled_caught or result in (None, i)
    assert sum(outcomes.values()) == RACES
    assert problems == []


async def test_asyncio_task_cancel_racing_completion(loop_name, problems):
    if loop_name == "trio":
        pytest.skip("asyncio API")
    for i in range(RACES):
        task = asyncio.ensure_future(m.sleep(0, i) if i % 2 else m.tokio_noop())
        for _ in range(random.randrange(3)):
            await asyncio.sleep(0)
        task.cancel()
        try:
            assert await task in (None, i)
        except asyncio.CancelledError:
            pass
    assert problems == []


async def test_cancel_racing_python_completion_inside_rust(loop_name, problems):
    """Python → Rust, delegated: a Rust coroutine awaits a Python coroutine; the task is
    cancelled as the Python coroutine finishes. The Python side ends exactly once either way."""
    finished = 0

    async def python_work(i):
        nonlocal finished
        try:
            for _ in range(i % 3):
                await anyio.lowlevel.checkpoint()
            return i
        finally:
            finished += 1

    for i in range(RACES):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(cancel_after, scope, random.randrange(3))
                assert await m.await_py(python_work(i)) == i
    await until(lambda: finished == RACES)
    assert problems == []


async def test_rust_drop_racing_python_completion(loop_name, problems):
    """Python → Rust, spawned: a tokio task drops its `PyFuture` (cancelling the Python task)
    as the Python task finishes. Dropped before the task started, the coroutine is closed
    unstarted; otherwise it runs to its end or to its cancellation: never left suspended."""
    created = begun = finished = 0

    async def python_work():
        nonlocal begun, finished
        begun += 1
        try:
            await anyio.lowlevel.checkpoint()
        finally:
            finished += 1

    def make():
        nonlocal created
        created += 1
        return python_work()

    races = RACES // 5  # each goes through tokio and back: slower
    outcomes = collections.Counter()
    for _ in range(races):
        outcomes[await m.drop_after(make, random.randrange(0, 100))] += 1
    await until_threads(lambda: created == races)
    for _ in range(100):  # tasks just scheduled get to begin
        await anyio.lowlevel.checkpoint()
    await until_threads(lambda: begun == finished)
    assert problems == []


async def test_tasks_on_the_runtimes_workers_see_only_their_own_context(loop_name, problems):
    # 100k tasks (full size) on the default tokio runtime's workers, each setting a ContextVar
    # in its attach and reading it back in the Python task it starts: a thread state kept by a
    # worker would hand one task's request id to the next.
    var = contextvars.ContextVar("request_id")

    async def read(var):
        return var.get(None)

    with anyio.fail_after(600):
        assert await m.context_leaks(var, read, CONTEXT_TASKS) == 0
    assert var.get(None) is None


async def test_thread_storm(loop_name, problems):
    """10k futures woken from 8 threads at once, with spurious wakes first, repeated wakes,
    and wakes after completion: each completes exactly once (trio would fail on a second
    reschedule of a task)."""
    storm = m.Storm(STORM)
    results = []

    async def wait(i):
        results.append(await storm.wait(i))

    async with anyio.create_task_group() as group:
        for i in range(STORM):
            group.start_soon(wait, i)
        await until(lambda: True)
        storm.fire_from_threads(8, 2, 3)
    assert sorted(results) == list(range(STORM))
    assert storm.completions() == [1] * STORM
    assert problems == []


def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def numbers(n):
    for i in range(n):
        yield i


async def python_noop():
    await anyio.lowlevel.checkpoint()


async def cancelled_pending():
    with anyio.CancelScope() as scope:
        scope.cancel()
        await m.pending_forever(m.Probe())


CYCLE_KINDS = {
    "ready await": lambda: m.ready(1),
    "tokio-woken await": m.tokio_noop,
    "cancelled await": cancelled_pending,
    "Rust stream, 10 items": lambda: drain(m.count(10)),
    "Rust awaits Python": lambda: m.await_py(python_noop()),
    "tokio spawns Python": lambda: m.spawn_with_from_tokio(python_noop),
    "PyAsyncIter, 10 items": lambda: m.collect_async_iter(numbers(10)),
}


async def drain(generator):
    async for _ in generator:
        pass


@pytest.mark.parametrize("kind", list(CYCLE_KINDS))
async def test_no_leak_over_cycles(loop_name, kind, quiet):
    """RSS stays flat (< 1 MiB) over many cycles, after a warm-up."""
    make = CYCLE_KINDS[kind]
    # Those through tokio and back cost a thread round trip each: in CI, a tenth of the cycles.
    local = kind in ("ready await", "cancelled await", "Rust stream, 10 items")
    cycles = CYCLES if FULL or local else CYCLES // 10
    for _ in range(min(cycles, 100_000)):
        await make()
    gc.collect()
    before = rss()
    for _ in range(cycles):
        await make()
    gc.collect()
    growth = rss() - before
    print(f"\n{loop_name} {kind}: RSS {growth / 1024:+.0f} KiB over {cycles} cycles", end="")
    assert growth < 1 << 20, f"{kind}: RSS grew {growth} bytes over {cycles} cycles"
    assert quiet == []


async def test_objects_are_freed(loop_name, problems):
    """What crosses the bridge is released: awaited Python coroutines, streamed items,
    iterated generators, and the exported awaitables themselves."""

    class Item:
        pass

    async def python_work(item):
        await anyio.lowlevel.checkpoint()
        return item

    async def items():
        yield Item()
        yield Item()

    refs = []
    coroutine = python_work(Item())
    refs.append(weakref.ref(coroutine))
    result = await m.await_py(coroutine)
    refs.append(weakref.ref(result))
    del coroutine, result
    generator = items()
    refs.append(weakref.ref(generator))
    collected = await m.collect_async_iter(generator)
    refs += [weakref.ref(item) for item in collected]
    del generator, collected
    exported = m.sleep(0, Item())
    refs.append(weakref.ref(exported))
    refs.append(weakref.ref(await exported))
    del exported
    gc.collect()
    assert [ref() for ref in refs] == [None] * len(refs)
    assert problems == []


@pytest.mark.parametrize(
    "scenario", ["wakes", "streams", "spawn_with", "guarded_attach", "runtime", "all"]
)
@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_exit_with_work_in_flight(loop, scenario):
    """Processes that exit while Rust threads wake coroutines, complete and drop `PyFuture`s
    and spawn Python work: none aborts, none hangs."""
    processes = max(PROCESSES // 10, 2)  # the scenario/loop pairs share the budget
    completed = subprocess.run(
        [sys.executable, EXIT_SCRIPT, str(processes), scenario, "--loop", loop],
        capture_output=True,
        text=True,
        timeout=600,
    )
    print("\n" + completed.stdout.strip(), end="")
    assert completed.returncode == 0, completed.stdout + completed.stderr

"""Benchmarks: pyo3-async against every peer, side by side, on asyncio, uvloop and trio.

`make bench` builds the contenders (release) and runs this, once per CPython it benchmarks
(tools/bench.sh). One process per loop and scenario; inside it, every contender is warmed up,
then measured in interleaved rounds, and the median is kept. Prints a markdown table, writes
BENCHMARKS.md and benchmarks.png. With `BENCH_RESULTS=<folder>`, the run also keeps its
results there (`<python>.json`), and the two files show every run kept in the folder, a
section per Python.

`BENCH_SCENARIOS` and `BENCH_CONTENDERS` (comma lists of the table's names) make a partial run:
only those rows and columns are measured, only those contenders' modules need to be built, and
the table is printed without touching BENCHMARKS.md and benchmarks.png, which describe full runs.
"""

import argparse
import asyncio
import datetime
import gc
import importlib
import importlib.util
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import threading
import time

LOOPS = ["asyncio", "uvloop", "trio"]
OURS = "pyo3-async"
# The same contender built with the limited API (`pyo3/abi3-py310`), as most wheels ship.
ABI3 = "pyo3-async abi3"
CONTENDERS = [OURS, ABI3, "PyO3 native", "pyo3-async-runtimes", "pyo3-async 0.3.2", "Python"]
# `make bench BASELINE=<git revision>` adds pyo3-async as it was at that revision (module
# `bench_baseline`, built by tools/bench_variant.sh), and a column comparing us with it.
BASELINE_REVISION = os.environ.get("BENCH_BASELINE")
BASELINE = f"pyo3-async @{BASELINE_REVISION}" if BASELINE_REVISION else None
if BASELINE:
    CONTENDERS.insert(1, BASELINE)
PEERS = ["PyO3 native", "pyo3-async-runtimes", "pyo3-async 0.3.2"]
# Each contender's module, in the order they are imported.
MODULES = {
    ABI3: "bench_abi3",
    OURS: "bench_ours",
    "PyO3 native": "bench_pyo3",
    "pyo3-async-runtimes": "bench_runtimes",
    "pyo3-async 0.3.2": "bench_seed",
}
if BASELINE:
    MODULES[BASELINE] = "bench_baseline"
# A peer that does not build for this Python (tools/bench.sh leaves it out) is not measured:
# its cells say n/a.
MISSING = [name for name, module in MODULES.items() if importlib.util.find_spec(module) is None]
SCENARIOS = {
    "S1": "await a ready Rust future (ns/await)",
    "S1 fixed": "S1, the backend fixed instead of detected (ns/await)",
    "S1 marked": "S1 through a function marked by `mark_coroutine_functions` (3.12+; ns/await)",
    "S2": "await a future completed on a tokio worker, sequentially (ns/await)",
    "S2 fixed": "S2, the backend fixed (ns/await)",
    "S3": "create and gather 10,000 S2 futures (ns/future)",
    "S3 fixed": "S3, the backend fixed (ns/future)",
    "S3 threads": "OS threads each contender added to the process during S3",
    "S4": "async for over 1M ready ints from a Rust stream (ns/item)",
    "S4 fixed": "S4, the backend fixed (ns/item)",
    "T1": "create and gather 10,000 futures sleeping 1 ms on a tokio timer (ns/future)",
    "S5": "tokio task awaits a Python coroutine on the loop through `spawn_with`, sequentially (ns/round trip)",
    "S5 spawn": "S5 through `EventLoop::spawn`: the tokio thread attaches to make the coroutine (ns/round trip)",
    "S6": "tokio task consumes a Python async generator of ints (ns/item)",
    "C1": "cancel 100k parked coroutines, each in its task, until all are done (ns/coroutine)",
    "C1 no gc": "C1 with the cyclic collector off while cancelling: the bridge's part, without the full collection that 100k tasks trigger (ns/coroutine)",
    "M1": "RSS per pending exported future, 100k pending, each in its task (bytes)",
    "M1 own": "RSS per pending exported future without a task: the awaitable, its state and what the framework keeps of its suspension (asyncio: the future; trio: the abort function) (bytes)",
    "M2": "RSS growth over 1M S1 awaits (KiB)",
}


def partial(variable, names):
    """The names listed in `variable` (a comma list), checked against `names`; None if unset."""
    listed = [name.strip() for name in os.environ.get(variable, "").split(",") if name.strip()]
    unknown = [name for name in listed if name not in names]
    if unknown:
        # A misspelt name would otherwise drop its row or column without a word.
        sys.exit(f"{variable}: unknown {', '.join(map(repr, unknown))}; known: {', '.join(names)}")
    return listed or None


# A partial run (`BENCH_SCENARIOS=S1,S4,M1`, `BENCH_CONTENDERS=pyo3-async,Python`): the rest
# is neither measured nor imported, so that comparing two of our builds needs no peer built.
ONLY_SCENARIOS = partial("BENCH_SCENARIOS", list(SCENARIOS))
ONLY_CONTENDERS = partial("BENCH_CONTENDERS", CONTENDERS)
PARTIAL = bool(ONLY_SCENARIOS or ONLY_CONTENDERS)
if ONLY_SCENARIOS:
    SCENARIOS = {name: text for name, text in SCENARIOS.items() if name in ONLY_SCENARIOS}
if ONLY_CONTENDERS:
    CONTENDERS = [name for name in CONTENDERS if name in ONLY_CONTENDERS]
# Our builds: the current one, the baseline if there is one, the abi3 one.
# The table's columns; the contenders measured are those built.
COLUMNS = list(CONTENDERS)
CONTENDERS = [name for name in CONTENDERS if name not in MISSING]
OWN = [name for name in (OURS, BASELINE, ABI3) if name in CONTENDERS]
# BENCH_QUICK=1: a fast pass to check that everything runs; numbers are then meaningless.
QUICK = os.environ.get("BENCH_QUICK") == "1"
WARM_UP_SECONDS = 0.2 if QUICK else 3.0
ROUNDS = 2 if QUICK else 5
MEASURE_SECONDS = 0.02 if QUICK else 0.15


def modules():
    # Only the contenders measured: a partial run may not have built the others.
    imported = {
        name: importlib.import_module(module) for name, module in MODULES.items() if name in CONTENDERS
    }
    # The order the ops of a scenario are interleaved in.
    order = [OURS, ABI3, *PEERS, BASELINE]
    return {name: imported[name] for name in order if name in imported}


class Renamed:
    """One of our modules with some functions swapped for variants (`ready` -> `ready_fixed`)."""

    def __init__(self, module, suffix):
        self.module, self.suffix = module, suffix

    def __getattr__(self, name):
        return getattr(self.module, name + self.suffix, None) or getattr(self.module, name)


def variant(suffix, mods):
    return {name: Renamed(module, suffix) if name in OWN else module for name, module in mods.items()}


def rss_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def thread_count():
    return len(os.listdir("/proc/self/task"))


# ---------------------------------------------------------------- scenario operations
# Each returns {contender: async op(n) -> elapsed ns for n operations}, for those that apply.


def sequential(make, argument):
    """Awaits `make(argument)` n times in a row."""

    async def op(n):
        start = time.perf_counter_ns()
        for _ in range(n):
            await make(argument)
        return time.perf_counter_ns() - start

    return op


def ops_s1(loop_name, mods):
    trio = loop_name == "trio"

    def rust(module):
        return sequential(module.ready, trio)

    async def native():
        return 1

    async def python(n):
        start = time.perf_counter_ns()
        for _ in range(n):
            await native()
        return time.perf_counter_ns() - start

    ops = {name: rust(module) for name, module in mods.items() if supports(name, loop_name)}
    ops["Python"] = python
    return ops


def supports(name, loop_name):
    """PyO3's own coroutines and pyo3-async-runtimes are asyncio-only."""
    return loop_name != "trio" or name in (*OWN, "pyo3-async 0.3.2")


class ThreadFloor:
    """A Python thread that completes loop waits: the pure-Python cross-thread round trip."""

    def __init__(self):
        self.requests = queue.SimpleQueue()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            self.requests.get()()

    async def round_trip(self, loop_name):
        if loop_name == "trio":
            import trio

            token = trio.lowlevel.current_trio_token()
            task = trio.lowlevel.current_task()
            self.requests.put(lambda: token.run_sync_soon(trio.lowlevel.reschedule, task))
            await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        else:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            self.requests.put(lambda: loop.call_soon_threadsafe(future.set_result, None))
            await future


def ops_s2(loop_name, mods):
    trio = loop_name == "trio"
    floor = ThreadFloor()

    def rust(module):
        return sequential(module.tokio_wake, trio)

    python = sequential(floor.round_trip, loop_name)

    ops = {name: rust(module) for name, module in mods.items() if supports(name, loop_name)}
    ops["Python"] = python
    return ops


async def gather(loop_name, awaitables):
    if loop_name == "trio":
        import trio

        async def run(awaitable):
            await awaitable

        async with trio.open_nursery() as nursery:
            for awaitable in awaitables:
                nursery.start_soon(run, awaitable)
    else:
        await asyncio.gather(*awaitables)


def gathered(loop_name, function):
    """An op creating `n` awaitables with `function(trio)` and gathering them. Creating them is
    timed too: a bridge that starts its work there must not get that work for free."""
    trio = loop_name == "trio"

    async def op(n):
        start = time.perf_counter_ns()
        await gather(loop_name, [function(trio) for _ in range(n)])
        return time.perf_counter_ns() - start

    return op


def ops_s3(loop_name, mods):
    return {
        name: gathered(loop_name, module.tokio_wake)
        for name, module in mods.items()
        if supports(name, loop_name)
    }


def ops_s4(loop_name, mods):
    trio = loop_name == "trio"

    def rust(module):
        async def op(n):
            start = time.perf_counter_ns()
            async for _ in module.count(trio, n):
                pass
            return time.perf_counter_ns() - start

        return op

    async def numbers(n):
        for i in range(n):
            yield i

    async def python(n):
        start = time.perf_counter_ns()
        async for _ in numbers(n):
            pass
        return time.perf_counter_ns() - start

    ops = {name: rust(mods[name]) for name in (*OWN, "pyo3-async 0.3.2") if name in mods}
    ops["Python"] = python
    return ops


def ops_t1(loop_name, mods):
    names = [*OWN] if loop_name == "trio" else [*OWN, "pyo3-async-runtimes"]
    return {name: gathered(loop_name, mods[name].tokio_sleep) for name in names if name in mods}


async def noop():
    pass


def ops_s5(loop_name, mods):
    def rust(module):
        async def op(n):
            return await module.call_python(noop, n)

        return op

    async def python(n):
        if loop_name == "trio":
            import trio

            token = trio.lowlevel.current_trio_token()

            def calls():
                start = time.perf_counter_ns()
                for _ in range(n):
                    trio.from_thread.run(noop, trio_token=token)
                return time.perf_counter_ns() - start

            return await trio.to_thread.run_sync(calls)
        loop = asyncio.get_running_loop()

        def calls():
            start = time.perf_counter_ns()
            for _ in range(n):
                asyncio.run_coroutine_threadsafe(noop(), loop).result()
            return time.perf_counter_ns() - start

        return await loop.run_in_executor(None, calls)

    ops = {name: rust(mods[name]) for name in OWN}
    if loop_name != "trio" and "pyo3-async-runtimes" in mods:
        ops["pyo3-async-runtimes"] = rust(mods["pyo3-async-runtimes"])
    ops["Python"] = python
    return ops


def ops_s5_spawn(loop_name, mods):
    ops = ops_s5(loop_name, mods)
    for name in OWN:
        module = mods[name]
        if hasattr(module, "call_python_spawn"):
            ops[name] = (lambda module: lambda n: module.call_python_spawn(noop, n))(module)
        else:
            del ops[name]
    return ops


def ops_s6(loop_name, mods):
    async def numbers(n):
        for i in range(n):
            yield i

    def rust(module):
        async def op(n):
            start = time.perf_counter_ns()
            count = await module.consume(numbers(n))
            assert count == n, count
            return time.perf_counter_ns() - start

        return op

    ops = {name: rust(mods[name]) for name in OWN}
    if loop_name != "trio" and "pyo3-async-runtimes" in mods:
        ops["pyo3-async-runtimes"] = rust(mods["pyo3-async-runtimes"])
    return ops


OPS = {
    "S1": ops_s1,
    "S1 fixed": lambda loop_name, mods: ops_s1(loop_name, variant("_fixed", mods)),
    "S1 marked": lambda loop_name, mods: ops_s1(loop_name, variant("_marked", mods)),
    "S2": ops_s2,
    "S2 fixed": lambda loop_name, mods: ops_s2(loop_name, variant("_fixed", mods)),
    "S3": ops_s3,
    "S3 fixed": lambda loop_name, mods: ops_s3(loop_name, variant("_fixed", mods)),
    "S4": ops_s4,
    "S4 fixed": lambda loop_name, mods: ops_s4(loop_name, variant("_fixed", mods)),
    "T1": ops_t1,
    "S5": ops_s5,
    "S5 spawn": ops_s5_spawn,
    "S6": ops_s6,
}
# Operations per measurement: fixed where the scenario defines it, else calibrated.
FIXED_N = {"S3": 10_000, "S3 fixed": 10_000, "S4": 1_000_000, "S4 fixed": 1_000_000, "T1": 10_000}


async def timed(loop_name, scenario):
    mods = modules()
    # The pure-Python floor is added by the scenarios; a partial run may leave it out.
    ops = {name: op for name, op in OPS[scenario](loop_name, mods).items() if name in CONTENDERS}
    if os.environ.get("BENCH_ONLY"):  # one contender, to investigate it alone
        ops = {name: op for name, op in ops.items() if name == os.environ["BENCH_ONLY"]}
    counts = {}
    # The threads each contender adds to the process (its runtime's, lazily started).
    threads = {}
    for name, op in ops.items():
        before = thread_count()
        await op(1 if scenario not in FIXED_N else FIXED_N[scenario])
        threads[name] = thread_count() - before
    # Warm up every contender and calibrate how many operations fill a measurement.
    deadline = time.perf_counter() + WARM_UP_SECONDS
    while time.perf_counter() < deadline:
        for name, op in ops.items():
            n = counts.get(name, 1 if scenario not in FIXED_N else FIXED_N[scenario] // 10)
            elapsed = await op(n) / 1e9
            if scenario not in FIXED_N and elapsed < MEASURE_SECONDS:
                n = min(n * 2, 1_000_000)
            counts[name] = n
    if scenario in FIXED_N:
        counts = {name: FIXED_N[scenario] for name in ops}
    samples = {name: [] for name in ops}
    for _ in range(ROUNDS):
        for name, op in ops.items():
            gc.collect()
            samples[name].append(await op(counts[name]) / counts[name])
    result = {name: statistics.median(values) for name, values in samples.items()}
    if scenario in ("S3", "S3 fixed"):
        result = {"S3": result, "S3 threads": threads}
    return result


async def cancellation(loop_name, contender, collector=True):
    """C1: 100k coroutines parked in their tasks, cancelled at once; the clock runs from the
    first `cancel` until every task has ended. The median of three rounds.

    Without the `collector` ("C1 no gc"), the cyclic collector is off while the clock runs:
    the objects a cancellation allocates trigger collections, and the one full collection
    among them walks every parked task, which takes half of C1 for every contender and varies
    by up to 2x between runs of the same one. What is left is the bridge's own work."""
    count = 100_000
    trio_loop = loop_name == "trio"
    if contender == "Python":
        if trio_loop:
            import trio

            make_pending = trio.sleep_forever
        else:

            async def make_pending():
                await asyncio.get_running_loop().create_future()

    else:
        module = modules()[contender]

        def make_pending():
            return module.pending(trio_loop)

    samples = []
    for _ in range(3):
        gc.collect()
        if trio_loop:
            import trio

            async with trio.open_nursery() as nursery:
                for _ in range(count):
                    nursery.start_soon(make_pending)
                await trio.testing.wait_all_tasks_blocked()
                if not collector:
                    gc.disable()
                start = time.perf_counter_ns()
                nursery.cancel_scope.cancel()
            samples.append((time.perf_counter_ns() - start) / count)
            gc.enable()
        else:
            tasks = [asyncio.ensure_future(make_pending()) for _ in range(count)]
            for _ in range(3):
                await asyncio.sleep(0)
            if not collector:
                gc.disable()
            start = time.perf_counter_ns()
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            samples.append((time.perf_counter_ns() - start) / count)
            gc.enable()
            del tasks
    return statistics.median(samples)


async def memory(loop_name, scenario, contender):
    trio_loop = loop_name == "trio"
    if contender == "Python":
        if trio_loop:
            import trio

            pending = trio.sleep_forever
            ready = noop
        else:

            async def pending():
                await asyncio.get_running_loop().create_future()

            ready = noop
        make_pending = pending
        make_ready = ready
    else:
        module = modules()[contender]

        def make_pending():
            return module.pending(trio_loop)

        def make_ready():
            return module.ready(trio_loop)

    if scenario == "M1 own":
        # Advanced by hand to the first suspension, as a task's first step would: what the
        # bridge itself keeps per pending future (the Python row: a coroutine awaiting a loop
        # future / trio's `sleep_forever`). Of what the step yields, only what the framework
        # keeps is kept: an asyncio task keeps the future (`_fut_waiter`); trio keeps the
        # trap's `abort_func` (`task._abort_func`) and drops the trap.
        count = 100_000
        kept = []
        gc.collect()
        before = rss_bytes()
        for _ in range(count):
            iterator = make_pending().__await__()
            yielded = iterator.send(None)
            kept.append(getattr(yielded, "abort_func", yielded) if trio_loop else yielded)
            kept.append(iterator)
        report((rss_bytes() - before) / count)
    if scenario == "M1":
        count = 100_000
        gc.collect()
        before = rss_bytes()
        if trio_loop:
            import trio

            async with trio.open_nursery() as nursery:
                for _ in range(count):
                    nursery.start_soon(lambda: make_pending())
                await trio.testing.wait_all_tasks_blocked()
                report((rss_bytes() - before) / count)
        else:
            tasks = [asyncio.ensure_future(make_pending()) for _ in range(count)]
            for _ in range(3):
                await asyncio.sleep(0)
            report((rss_bytes() - before) / count)
            del tasks
    # M2: growth over 1M awaits, after 100k of warm-up; at most 60 s of awaiting (a slower
    # contender's growth is scaled to 1M).
    for _ in range(100_000):
        await make_ready()
    gc.collect()
    before = rss_bytes()
    deadline = time.perf_counter() + 60
    done = 0
    while done < 1_000_000 and time.perf_counter() < deadline:
        for _ in range(10_000):
            await make_ready()
        done += 10_000
    gc.collect()
    return {"kib": (rss_bytes() - before) / 1024 * 1_000_000 / done, "awaits": done}


def report(result):
    """Prints the worker's result and ends the process at once: tearing 100k pending futures
    down is not measured, and one peer never finishes cancelling on trio."""
    print(json.dumps(result), flush=True)
    os._exit(0)


def run_on(loop_name, main):
    if loop_name == "trio":
        import trio
        import trio.testing  # noqa: F401  (wait_all_tasks_blocked)

        return trio.run(main)
    if loop_name == "uvloop":
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


def worker(loop_name, scenario, contender):
    if scenario in ("M1", "M1 own", "M2"):
        result = run_on(loop_name, lambda: memory(loop_name, scenario, contender))
    elif scenario in ("C1", "C1 no gc"):
        collector = scenario == "C1"
        result = run_on(loop_name, lambda: cancellation(loop_name, contender, collector))
    else:
        result = run_on(loop_name, lambda: timed(loop_name, scenario))
    print(json.dumps(result))


# ---------------------------------------------------------------- the parent


EXIT_CRASHES = []
TIMEOUTS = []


def spawn(*args, timeout=300):
    """Runs a worker and returns what it reported; `None` if it reported nothing in time (a
    peer that hangs or crashes). A worker killed at interpreter exit after reporting (a peer's
    thread entering Python during finalisation aborts the process) still counts, and is noted."""
    try:
        output = subprocess.run(
            [sys.executable, __file__, "--worker", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        print(f"    {' '.join(args)}: timed out", file=sys.stderr, flush=True)
        TIMEOUTS.append(f"{' '.join(args).strip()} (over {timeout} s)")
        return None
    lines = output.stdout.strip().splitlines()
    if output.returncode != 0:
        EXIT_CRASHES.append(f"{' '.join(args).strip()} (exit code {output.returncode})")
        print(f"    {' '.join(args)}: exit code {output.returncode}", file=sys.stderr, flush=True)
        if not lines:
            print(output.stderr[-2000:], file=sys.stderr, flush=True)
            return None
    return json.loads(lines[-1])


def collect():
    results = {}  # (scenario, loop) -> {contender: value}
    for loop_name in LOOPS:
        for scenario in OPS:
            # S3's process measures "S3 threads" too.
            if scenario not in SCENARIOS and not (scenario == "S3" and "S3 threads" in SCENARIOS):
                continue
            print(f"  {loop_name} {scenario}...", file=sys.stderr, flush=True)
            measured = spawn(loop_name, scenario, "")
            if measured is None:
                continue
            if scenario == "S3":
                results[("S3", loop_name)] = measured["S3"]
                results[("S3 threads", loop_name)] = measured["S3 threads"]
            elif scenario == "S3 fixed":
                results[("S3 fixed", loop_name)] = measured["S3"]
            else:
                results[(scenario, loop_name)] = measured
        for scenario in ("C1", "C1 no gc", "M1", "M1 own", "M2"):
            if scenario not in SCENARIOS:
                continue
            row = {}
            for contender in CONTENDERS:
                if contender not in ("Python", *OWN, "pyo3-async 0.3.2") and loop_name == "trio":
                    continue
                print(f"  {loop_name} {scenario} {contender}...", file=sys.stderr, flush=True)
                # A bridge that never finishes cancelling is given a minute.
                value = spawn(loop_name, scenario, contender, timeout=60 if scenario.startswith("C1") else 300)
                if value is None:
                    continue
                row[contender] = value["kib"] if scenario == "M2" else value
            results[(scenario, loop_name)] = row
    return results


def ratio(row):
    ours = row.get(OURS)
    peers = [v for k, v in row.items() if k in PEERS and isinstance(v, (int, float))]
    if ours is None or not peers:
        return None
    best = min(peers)
    return ours / best if best > 0 else None


def floor_ratio(row):
    ours, floor = row.get(OURS), row.get("Python")
    if ours is None or not floor:
        return None
    return ours / floor


def baseline_ratio(row):
    ours, before = row.get(OURS), row.get(BASELINE)
    if ours is None or not before:
        return None
    return ours / before


def fmt(value):
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def table(results):
    extra = [f"ours / @{BASELINE_REVISION}"] if BASELINE else []
    lines = [
        "| scenario | loop | " + " | ".join(COLUMNS + extra) + " | ours / Python | ours / best peer |",
        "|---|---|" + "---|" * len(COLUMNS + extra) + "---|---|",
    ]
    for scenario in SCENARIOS:
        for loop_name in LOOPS:
            row = results.get((scenario, loop_name))
            if row is None:
                continue
            cells = [fmt(row.get(name)) for name in COLUMNS]
            if BASELINE:
                b = baseline_ratio(row)
                cells.append(f"{b:.3f}" if b else "n/a")
            r = ratio(row) if scenario != "S3 threads" else None
            f = floor_ratio(row) if scenario != "S3 threads" else None
            cells.append(f"{f:.2f}" if f else "n/a")
            cells.append(f"{r:.2f}" if r else "n/a")
            lines.append(f"| {scenario} | {loop_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs, path):
    """One panel per Python: pyo3-async over the best peer, per scenario and loop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 5 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs):
        labels, values = [], []
        for scenario in SCENARIOS:
            for loop_name in LOOPS:
                row = run["results"].get((scenario, loop_name))
                r = ratio(row) if row and scenario != "S3 threads" else None
                if r:
                    labels.append(f"{scenario} {loop_name}")
                    values.append(r)
        if not values:
            continue
        colors = ["tab:green" if v <= 1 else "tab:red" for v in values]
        ax.bar(labels, values, color=colors)
        ax.axhline(1, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10) if min(values) / 2 <= t <= max(values) * 2]
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_ylabel("pyo3-async / best peer (lower is better)")
        ax.set_title(f"pyo3-async against the best peer, per scenario and loop: {run['python']}")
        ax.tick_params(axis="x", labelrotation=60)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=3)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    started = time.monotonic()
    results = collect()
    markdown = table(results)
    print(markdown)
    if PARTIAL:
        # The files describe full runs: a partial one only reports here.
        for what, runs in (("did not report in time", TIMEOUTS), ("crashed at exit", EXIT_CRASHES)):
            if runs:
                print(f"\nWorker processes that {what}: " + "; ".join(runs) + ".", file=sys.stderr)
        elapsed = time.monotonic() - started
        print(f"\npartial run in {elapsed:.0f} s; BENCHMARKS.md and benchmarks.png untouched", file=sys.stderr)
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    python = f"{platform.python_implementation()} {platform.python_version()}"
    run = {
        "python": python,
        "version": list(sys.version_info[:3]),
        "date": str(datetime.date.today()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "seconds": round(time.monotonic() - started),
        "results": results,
        "missing": MISSING,
        # What tools/bench.sh had to do to build a peer for this Python.
        "notes": os.environ.get("BENCH_NOTES", "").strip(),
        "timeouts": TIMEOUTS,
        "crashes": EXIT_CRASHES,
    }
    runs = [run]
    kept = os.environ.get("BENCH_RESULTS")
    if kept:
        folder = os.path.join(root, kept)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{platform.python_version()}.json"), "w") as out:
            json.dump({**run, "results": [[s, l, row] for (s, l), row in results.items()]}, out)
        runs = []
        for name in os.listdir(folder):
            with open(os.path.join(folder, name)) as kept_run:
                loaded = json.load(kept_run)
            loaded["results"] = {(s, l): row for s, l, row in loaded["results"]}
            runs.append(loaded)
        runs.sort(key=lambda r: r["version"])
    write_report(runs, os.path.join(root, "BENCHMARKS.md"))
    plot(runs, os.path.join(root, "benchmarks.png"))
    print(f"\nwrote BENCHMARKS.md and benchmarks.png in {time.monotonic() - started:.0f} s", file=sys.stderr)


def write_report(runs, path):
    """BENCHMARKS.md: the scenarios, then a table per Python."""
    with open(path, "w") as out:
        out.write("# Benchmarks\n\n")
        pythons = ", ".join(run["python"] for run in runs)
        out.write(f"Run by `make bench` on {runs[-1]['date']} ({runs[-1]['machine']}), once per Python: ")
        out.write(f"{pythons}. Medians of {ROUNDS} interleaved rounds after a ")
        out.write(f"{WARM_UP_SECONDS:.0f} s warm-up, one process per loop and scenario. Lower is better; ")
        out.write("the last two columns divide pyo3-async by the pure-Python floor and by the best other ")
        out.write("Rust bridge. `pyo3-async abi3` is the same code built with the limited API.")
        if BASELINE:
            out.write(f" `{BASELINE}` is this crate at that revision, measured in the same processes.")
        out.write("\n\n")
        for scenario, text in SCENARIOS.items():
            out.write(f"- **{scenario}**: {text}\n")
        for run in runs:
            out.write(f"\n## {run['python']}\n\n{run['seconds']} s.")
            if run["missing"]:
                out.write(" Not built for this Python (n/a): " + ", ".join(run["missing"]) + ".")
            if run.get("notes"):
                out.write(" " + run["notes"])
            out.write("\n\n" + table(run["results"]) + "\n")
            if run["timeouts"]:
                out.write("\nWorker processes that did not report in time (their cells are n/a): ")
                out.write("; ".join(run["timeouts"]) + ".\n")
            if run["crashes"]:
                out.write("\nWorker processes that crashed at interpreter exit after reporting ")
                out.write("(all contenders of a scenario share a process): ")
                out.write("; ".join(run["crashes"]) + ".\n")
        out.write("\n![ratios](benchmarks.png)\n")


if __name__ == "__main__":
    main()

"""Exit safety: processes that leave asyncio while Rust threads still wake coroutines, complete
futures and spawn Python work. Counts how many processes end abnormally (CPython kills a thread
that attaches while it finalises; in Rust that aborts the process).

    python stress/exit_race.py [processes] [scenario]

Scenarios: `wakes` (coroutines woken by tokio), `streams` (PyAsyncIter dropped mid-stream),
`spawn_with` (tokio threads schedule Python work without attaching), `attach` (the same through
`Python::attach` on tokio threads: the hazard spawn_with avoids), `all` (all but `attach`).
Needs the test module (`make test` builds it). Not part of CI: it takes minutes.
"""

import asyncio
import collections
import random
import subprocess
import sys

import pyo3_async_pytests as m

SCENARIOS = ("wakes", "streams", "spawn_with", "attach", "all")


async def numbers():
    i = 0
    while True:
        await asyncio.sleep(0)
        yield i
        i += 1


async def python_work():
    await asyncio.sleep(0.001)


async def in_flight(scenario):
    tasks = []
    if scenario in ("wakes", "all"):
        tasks += [asyncio.ensure_future(m.sleep(random.random() * 0.01, i)) for i in range(300)]
        tasks += [asyncio.ensure_future(m.tokio_noop()) for _ in range(300)]
    if scenario in ("streams", "all"):
        tasks += [asyncio.ensure_future(m.collect_async_iter(numbers(), 4)) for _ in range(5)]
    if scenario in ("spawn_with", "all"):
        tasks += [asyncio.ensure_future(m.spawn_with_from_tokio(python_work)) for _ in range(50)]
    if scenario == "attach":
        tasks += [asyncio.ensure_future(m.spawn_from_tokio(python_work())) for _ in range(50)]
    await asyncio.sleep(random.random() * 0.01)
    sys.exit(0)  # leave with everything in flight


def child(scenario):
    try:
        asyncio.run(in_flight(scenario))
    except SystemExit:
        pass


def main():
    processes = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    scenarios = sys.argv[2:] or [s for s in SCENARIOS if s != "attach"]
    failed = False
    for scenario in scenarios:
        outcomes = collections.Counter()
        for _ in range(processes):
            code = subprocess.run(
                [sys.executable, __file__, "--child", scenario],
                capture_output=True,
                timeout=60,
            ).returncode
            outcomes[code] += 1
        abnormal = processes - outcomes[0]
        failed |= abnormal > 0 and scenario != "attach"
        print(f"{scenario:10} {abnormal} of {processes} processes ended abnormally {dict(outcomes)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
    else:
        main()

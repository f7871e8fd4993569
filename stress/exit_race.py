"""Exit safety: processes that leave their event loop while Rust threads still wake coroutines,
complete and drop `PyFuture`s and spawn Python work. Counts processes that end abnormally
(CPython kills a thread that attaches while it finalises; in Rust that aborts the process),
hang, or are noisy (a task started during the shutdown reported destroyed while pending).

    python stress/exit_race.py [processes] [scenario ...] [--loop asyncio|trio]

Scenarios: `wakes` (coroutines woken by tokio), `streams` (PyAsyncIter dropped mid-stream),
`spawn_with` (tokio threads schedule Python work without attaching), `guarded_attach` (tokio
threads attach through `pyo3_async::attach_unless_exiting`), `runtime` (work on the runtime
pyo3-async owns, which it shuts down at exit: timers, spawned tasks, and tasks left pending whose
destructors call Python), `all` (all of these), and
`attach` (tokio threads calling `Python::attach` themselves: the hazard the others avoid, not
run unless named, never counted as a failure). The pytest suite runs it (test_stress.py);
`make stress` at full size. Needs the test module.
"""

import argparse
import collections
import concurrent.futures
import random
import subprocess
import sys

SCENARIOS = ("wakes", "streams", "spawn_with", "guarded_attach", "runtime", "all", "attach")


def child(scenario, loop):
    import faulthandler

    import pyo3_async_pytests as m

    # A hang shows where every thread is, then ends the process (counted as abnormal).
    faulthandler.dump_traceback_later(30, exit=True)

    if loop == "trio":
        import trio

        sleep = trio.sleep
    else:
        import asyncio

        sleep = asyncio.sleep

    async def numbers():
        i = 0
        while True:
            await sleep(0)
            yield i
            i += 1

    async def python_work():
        await sleep(0.001)

    async def watchdog():
        await trio.sleep(20)
        import os

        def show(task, depth):
            frame = getattr(task.coro, "cr_frame", None)
            where = f"{frame.f_code.co_name}:{frame.f_lineno}" if frame else ""
            print("  " * depth, task.name, where, file=sys.stderr)
            for nursery in task.child_nurseries:
                for child in nursery.child_tasks:
                    show(child, depth + 1)

        show(trio.lowlevel.current_root_task(), 0)
        sys.stderr.flush()
        os._exit(3)

    def in_flight():
        awaitables = []
        if scenario in ("wakes", "all"):
            awaitables += [m.sleep(random.random() * 0.01, i) for i in range(300)]
            awaitables += [m.tokio_noop() for _ in range(300)]
        if scenario in ("streams", "all"):
            awaitables += [m.collect_async_iter(numbers(), 4) for _ in range(5)]
        if scenario in ("spawn_with", "all"):
            awaitables += [m.spawn_with_from_tokio(python_work) for _ in range(50)]
            awaitables += [m.drop_after(python_work, random.randrange(100)) for _ in range(50)]
        if scenario in ("guarded_attach", "all"):
            awaitables += [m.spawn_guarded_from_tokio(python_work) for _ in range(50)]
        if scenario in ("runtime", "all"):
            awaitables += [m.spawned_value(i) for i in range(100)]
            awaitables += [m.tokio_sleep(random.random() * 0.01, i) for i in range(100)]
            for _ in range(20):
                m.leave_task_at_exit(lambda message: None)
        if scenario == "attach":
            awaitables += [m.spawn_from_tokio(python_work()) for _ in range(50)]
        return awaitables

    async def run_then_leave():
        # Started as tasks, then abandoned mid-flight: the process exits with them pending.
        if loop == "trio":
            trio.lowlevel.spawn_system_task(watchdog)
            async with trio.open_nursery() as nursery:
                for awaitable in in_flight():

                    async def run(awaitable=awaitable):
                        try:
                            await awaitable
                        except Exception:
                            pass

                    nursery.start_soon(run, name=repr(awaitable))
                await trio.sleep(random.random() * 0.01)
                nursery.cancel_scope.cancel()
        else:
            tasks = [asyncio.ensure_future(awaitable) for awaitable in in_flight()]
            await asyncio.sleep(random.random() * 0.01)
            del tasks

    if loop == "trio":
        trio.run(run_then_leave)
    else:
        asyncio.run(run_then_leave())


def run_child(scenario, loop):
    try:
        completed = subprocess.run(
            [sys.executable, __file__, "--child", scenario, "--loop", loop],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        return "hang"
    if completed.returncode != 0:
        print(completed.stderr[-3000:], file=sys.stderr, flush=True)
        return completed.returncode
    # Tasks that pyo3-async started while the loop shut down, left to die pending.
    if "was destroyed but it is pending" in completed.stderr:
        print(completed.stderr[-3000:], file=sys.stderr, flush=True)
        return "noisy"
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("processes", nargs="?", type=int, default=100)
    parser.add_argument("scenarios", nargs="*")
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.loop)
        return
    scenarios = args.scenarios or [s for s in SCENARIOS if s != "attach"]
    failed = False
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for scenario in scenarios:
            codes = pool.map(lambda _: run_child(scenario, args.loop), range(args.processes))
            outcomes = collections.Counter(codes)
            abnormal = args.processes - outcomes[0]
            failed |= abnormal > 0 and scenario != "attach"
            print(
                f"{args.loop:8} {scenario:15} {abnormal} of {args.processes} processes ended "
                f"abnormally {dict(outcomes)}",
                flush=True,
            )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

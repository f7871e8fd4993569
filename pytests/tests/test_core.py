"""The core's promises (one home per loop, one way onto its thread, wakers that never wait
for the interpreter), on asyncio, uvloop and trio, and on a loop without `add_reader`."""

import asyncio
import contextvars
import gc
import os
import subprocess
import sys
import textwrap
import threading

import pytest
import trio
import uvloop

import pyo3_async_pytests as t
from helpers import full_api_only, sized

LOOP_FACTORIES = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


class NoReaderLoop(asyncio.SelectorEventLoop):
    """A loop that cannot watch file descriptors (as Windows' Proactor loop, custom loops)."""

    def add_reader(self, fd, callback, *args):
        raise NotImplementedError


def open_fds():
    return len(os.listdir("/proc/self/fd"))


# ---- 1. A waker never waits for the interpreter ----


async def wake_while_the_loop_thread_holds_the_interpreter(backend=None):
    trigger = t.Trigger()
    waiting = t.Trigger.wait(trigger, "woken", backend)
    # First suspension on the loop (registers the wake-up), then the wake from a thread that
    # holds a lock this (attached) loop thread takes meanwhile.
    if backend == "trio":
        async with trio.open_nursery() as nursery:
            results = []

            async def run():
                results.append(await waiting)

            nursery.start_soon(run)
            await trio.lowlevel.checkpoint()
            assert t.wake_under_foreign_lock(trigger, 10.0), "the waker waited for the interpreter"
        return results[0]
    task = asyncio.ensure_future(waiting)
    await asyncio.sleep(0)
    assert t.wake_under_foreign_lock(trigger, 10.0), "the waker waited for the interpreter"
    return await task


@pytest.mark.parametrize("kind", ["asyncio", "uvloop", "no_add_reader"])
def test_a_waker_never_waits_for_the_interpreter_asyncio(kind):
    loop = NoReaderLoop() if kind == "no_add_reader" else LOOP_FACTORIES[kind]()
    try:
        for _ in range(sized(20, 2000)):
            assert loop.run_until_complete(wake_while_the_loop_thread_holds_the_interpreter()) == "woken"
    finally:
        loop.close()


def test_a_waker_never_waits_for_the_interpreter_trio():
    for _ in range(sized(20, 2000)):
        assert trio.run(wake_while_the_loop_thread_holds_the_interpreter, "trio") == "woken"


def test_wakeups_on_a_loop_without_add_reader_arrive_from_threads():
    loop = NoReaderLoop()

    async def main():
        return await asyncio.gather(*(t.sleep(0.001, i) for i in range(n)))

    n = sized(200, 20_000)
    try:
        assert loop.run_until_complete(main()) == list(range(n))
    finally:
        loop.close()


# ---- 2. A loop that moves to another thread ----


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_a_loop_run_by_another_thread_gets_wakes_from_the_old_one(kind):
    loop = LOOP_FACTORIES[kind]()
    trigger = t.Trigger()
    started = {}

    def first_thread():
        async def park():
            started["task"] = loop.create_task(t.Trigger.wait(trigger, "moved"))
            await asyncio.sleep(0)  # the coroutine suspends: its loop is this thread's, now

        loop.run_until_complete(park())

    thread = threading.Thread(target=first_thread)
    thread.start()
    thread.join()
    outcome = {}

    def second_thread():
        outcome["value"] = loop.run_until_complete(asyncio.wait_for(started["task"], 10))

    runner = threading.Thread(target=second_thread)
    runner.start()
    # This (attached) thread ran the loop once; it no longer does. Its wake must still reach
    # the thread that runs the loop now.
    while not loop.is_running():
        pass
    trigger.fire()
    runner.join()
    loop.close()
    assert outcome == {"value": "moved"}


# ---- 3. One home per loop, however often a thread switches loops ----


def test_alternating_loops_keep_one_home_each():
    loops = [asyncio.new_event_loop(), uvloop.new_event_loop()]

    async def suspend_once():
        return await t.sleep(0, "ok")

    try:
        for loop in loops:
            loop.run_until_complete(suspend_once())
        before = open_fds()
        for _ in range(sized(300, 10_000)):
            for loop in loops:
                assert loop.run_until_complete(suspend_once()) == "ok"
        assert open_fds() <= before + 2, "a loop switch built a new wake signal"
    finally:
        for loop in loops:
            loop.close()


def test_trio_guest_mode_on_asyncio_keeps_one_home_per_loop():
    async def trio_main():
        for _ in range(100):
            assert await t.sleep(0, "ok") == "ok"
        return "done"

    async def host():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        before = open_fds()
        trio.lowlevel.start_guest_run(
            trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=lambda outcome: done.set_result(outcome),
        )
        for _ in range(100):
            assert await t.sleep(0, "host") == "host"
        outcome = await done
        assert open_fds() <= before + 4
        return outcome.unwrap()

    assert asyncio.run(host()) == "done"


# ---- 4. Closing a loop with work suspended ----


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_closing_a_loop_ends_delegated_awaits_without_the_gc(kind):
    loop = LOOP_FACTORIES[kind]()
    cleaned = []

    async def python_side():
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("finally")

    async def main():
        loop.create_task(t.await_py(python_side()))
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    gc.disable()
    try:
        loop.run_until_complete(main())
        loop.close()
        assert cleaned == ["finally"], "the delegated awaitable's finally did not run"
    finally:
        gc.enable()


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_a_probe_future_of_a_closed_loop_is_dropped(kind):
    loop = LOOP_FACTORIES[kind]()
    probe = t.Probe()

    async def main():
        loop.create_task(t.pending_forever(probe))
        await asyncio.sleep(0)

    gc.disable()
    try:
        loop.run_until_complete(main())
        assert not probe.dropped
        loop.close()
        assert probe.dropped
    finally:
        gc.enable()


# ---- 5. An interrupt during the drain ----


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_an_interrupt_in_a_scheduled_job_propagates_and_no_wake_is_lost():
    loop = asyncio.new_event_loop()
    trigger = t.Trigger()

    def interrupting():
        raise KeyboardInterrupt


    def interrupt():
        # A job that raises an interrupt on the loop's thread, and a wake-up right behind it.
        t.spawn_with_from_tokio(interrupting)
        trigger.fire_from_thread()

    # Delivered before the interrupt, or queued again behind it: never lost.
    assert_interrupted_then_woken(loop, trigger, interrupt) == "still woken"


def assert_interrupted_then_woken(loop, trigger, interrupt):
    """Runs a task waiting for `trigger` and, beside it, `interrupt()` (awaited if it returns
    an awaitable): the loop stops with `KeyboardInterrupt`; then runs the loop on and returns
    what the waiting task got."""
    tasks = []

    async def main():
        tasks.append(asyncio.ensure_future(trigger.wait("still woken")))
        await asyncio.sleep(0)
        interrupted = interrupt()
        if interrupted is not None:
            await interrupted
        # A future, not a coroutine: the interrupt may land between making the awaitable and
        # awaiting it, and an unawaited coroutine would warn.
        await asyncio.get_running_loop().create_future()

    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(main())
        return loop.run_until_complete(asyncio.wait_for(tasks[0], 10))
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_an_interrupt_pending_as_a_wake_up_is_delivered_loses_no_wake_up(loop_name):
    # Ctrl-C arrives while a wake-up is delivered on the loop's thread: the signal handler must
    # not run inside the delivery (asyncio's `call_soon`, after the future was marked done),
    # or the woken task would never resume, and `asyncio.Runner` would hang on it.
    trigger = t.Trigger()
    woken = assert_interrupted_then_woken(
        LOOP_FACTORIES[loop_name](), trigger, lambda: t.interrupt_and_fire(trigger)
    )
    assert woken == "still woken"


def test_an_interrupt_pending_under_a_runner_ends_the_shutdown():
    # `asyncio.Runner` cancels the main task after Ctrl-C and waits for it: a lost wake-up of
    # a task the main task waits for would hang the shutdown for ever.
    script = textwrap.dedent(
        """
        import asyncio
        import pyo3_async_pytests as t

        async def main():
            trigger = t.Trigger()
            waiting = asyncio.ensure_future(trigger.wait("woken"))
            await asyncio.sleep(0)
            await t.interrupt_and_fire(trigger)
            await asyncio.sleep(3600)

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "interrupted" in done.stdout


SIGNAL_THEN_FIRE = """
import asyncio, functools, operator, signal, sys, _thread
import pyo3_async_pytests as t

calls = []

def handler(signum, frame):
    calls.append(signum)
    raise {raised}

signal.signal(signal.{signal}, handler)

async def main():
    trigger = t.Trigger()
    waiting = asyncio.ensure_future(trigger.wait("woken"))
    await asyncio.sleep(0)
    # The signal made pending, then the wake-up fired on the loop's thread, with no bytecode in
    # between: the handler runs inside the wake-up's delivery.
    any(map(operator.call, [functools.partial(_thread.interrupt_main, signal.{signal}), trigger.fire]))
    return await asyncio.wait_for(waiting, 10)

try:
    print("result", {run}(main()), flush=True)
except BaseException as raised:
    print("raised", type(raised).__name__, raised, flush=True)
print("calls", len(calls), flush=True)
"""


@pytest.mark.skipif(sys.version_info < (3, 11), reason="operator.call is 3.11+")
@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
@pytest.mark.parametrize(
    "signal_name, raised, expected",
    [
        ("SIGTERM", "SystemExit(3)", "raised SystemExit 3"),
        ("SIGTERM", "KeyboardInterrupt", "raised KeyboardInterrupt"),
        ("SIGINT", "KeyboardInterrupt", "raised KeyboardInterrupt"),
    ],
)
def test_what_a_signal_handler_raises_during_a_delivery_is_raised_once(
    loop_name, signal_name, raised, expected
):
    # Not swallowed (a SystemExit of a SIGTERM handler), not re-delivered as a second SIGINT
    # (the handler ran once), and the wake-up still arrives when the loop runs on.
    run = "asyncio.run" if loop_name == "asyncio" else "__import__('uvloop').run"
    script = SIGNAL_THEN_FIRE.format(raised=raised, signal=signal_name, run=run)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout, done.stdout + done.stderr
    assert "calls 1" in done.stdout, done.stdout


@pytest.mark.skipif(sys.version_info < (3, 11), reason="operator.call is 3.11+")
def test_what_a_signal_handler_raises_during_a_delivery_reaches_trio_code():
    # As CPython raises it: in the Python code that runs next (here the nursery's body, so
    # trio hands it on in a group), once; never a TrioInternalError, never swallowed.
    script = textwrap.dedent(
        """
        import functools, operator, signal, _thread
        import trio
        import pyo3_async_pytests as t

        calls = []

        def handler(signum, frame):
            calls.append(signum)
            raise SystemExit(3)

        signal.signal(signal.SIGTERM, handler)

        async def main():
            trigger = t.Trigger()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trigger.wait, "woken")
                await trio.sleep(0.01)
                any(map(operator.call, [
                    functools.partial(_thread.interrupt_main, signal.SIGTERM), trigger.fire
                ]))
                await trio.sleep(0)

        try:
            trio.run(main)
        except BaseException as raised:
            leaves = raised.exceptions if hasattr(raised, "exceptions") else [raised]
            print("raised", [type(leaf).__name__ for leaf in leaves], flush=True)
        print("calls", len(calls), flush=True)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "raised ['SystemExit']" in done.stdout, done.stdout + done.stderr
    assert "calls 1" in done.stdout


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_factory_raising_pyo3s_panic_exception_leaves_the_loop_sound(loop_name):
    # PyO3 resumes a `PanicException` raised by Python code as a panic: inside `spawn_with`'s
    # factory it must not leave the job's context entered on the loop's thread (every later
    # callback would fail, wake-ups would be lost) nor leak into the caller's context.
    script = textwrap.dedent(
        f"""
        import asyncio, contextvars
        import pyo3_async_pytests as t

        var = contextvars.ContextVar("var", default="unset")

        async def panic_exception_type():
            t.use_pyo3_panics(True)
            try:
                await t.panic("x", False)
            except BaseException as exc:
                return type(exc)
            finally:
                t.use_pyo3_panics(False)

        PanicException = asyncio.run(panic_exception_type())

        def factory():
            var.set("job")
            raise PanicException("raised by a factory")

        async def main():
            problems = []
            asyncio.get_running_loop().set_exception_handler(lambda _, c: problems.append(c))
            try:
                await asyncio.wait_for(t.spawn_with_from_tokio(factory), 10)
            except Exception as exc:
                print("factory", type(exc).__name__, exc, flush=True)
            print("later", await asyncio.wait_for(t.sleep(0.001, "woken"), 10), flush=True)
            print("problems", len(problems), flush=True)

        {"asyncio.run" if loop_name == "asyncio" else "__import__('uvloop').run"}(main())
        print("var", var.get(), flush=True)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "factory PanicError raised by a factory" in done.stdout, done.stdout + done.stderr
    assert "later woken" in done.stdout
    assert "problems 0" in done.stdout
    assert "var unset" in done.stdout


# ---- 6. atexit ordering ----


@full_api_only
def test_an_atexit_hook_registered_first_may_still_attach():
    script = textwrap.dedent(
        """
        import atexit, asyncio
        import pyo3_async_pytests as t

        results = []

        def late_hook():  # registered first, so it runs after pyo3-async's own
            print("attach:", t.guarded_attach_works(), flush=True)

        atexit.register(late_hook)
        asyncio.run(t.sleep(0))  # pyo3-async meets a loop: its hook is registered
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "attach: True" in done.stdout


# ---- 7. Handles built anywhere reach the loop through its home ----


@pytest.mark.anyio
async def test_spawn_with_from_threads_on_every_loop(loop_name):
    async def answer():
        return 42

    results = [await t.spawn_with_from_tokio(answer) for _ in range(50)]
    assert results == [42] * 50


REQUEST = contextvars.ContextVar("request", default=None)


@pytest.mark.anyio
async def test_spawn_with_factories_run_in_their_own_jobs_context(loop_name):
    # "A new, empty context per job", and the factory is part of its job: what one factory
    # sets is seen by its own coroutine, never by later factories or by the caller.
    seen_by_factories = []

    def factory(request_id):
        def make():
            seen_by_factories.append(REQUEST.get())
            REQUEST.set(request_id)

            async def job():
                return REQUEST.get()

            return job()

        return make

    results = [await t.spawn_with_from_tokio(factory(i)) for i in range(5)]
    assert results == list(range(5))
    assert seen_by_factories == [None] * 5
    assert REQUEST.get() is None

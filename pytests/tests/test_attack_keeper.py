"""Attack on the keeper (commit f413e5b, src/home/drain.rs, src/glue/helpers.py
`watch_asyncio`): a loop without a working `add_reader` keeps its home's keeper, a Drain in
a timer of the loop, whose release kills the home.

Findings:
- a home that dies while its loop still runs (the keeper's timer cancelled; the same for a
  watching loop whose reader is removed: older than the keeper) never resumed the task parked
  on it; fixed in the next stop: the task is resumed, and fails at its next wait. While that
  task's waiter kept the dead home registered, every new Rust coroutine of that loop that
  needed a wake-up hung silently: fixed in the same stop, such a coroutine now fails at its
  first suspension with a RuntimeError. Now (succession, see test_attack_round14) the home
  hands over to a successor while the loop runs: the task stays parked and is woken through
  it, and new coroutines get the successor;
- fixed in the same stop: the keeper was due at infinity, and a loop that fast-forwards its
  clock to its next timer when idle (virtual-clock test loops) jumped to infinity, fired the
  keeper (its release killed the home) and then never fired another timer. It is now due in
  some 34 years, and a keeper that fires disarms."""

import _thread
import asyncio
import gc
import itertools
import math
import selectors
import sys
import threading
import time
import warnings
import weakref

import pytest
import uvloop

import pyo3_async_pytests as m

from helpers import park_once, run_script, until
from test_attack_round13 import NoReaderLoop, NoReaderUvloop, collected
from test_attack_wakeup_future import outcome, parked


def drain_fds(loop):
    return [
        key.fd
        for key in loop._selector.get_map().values()
        if key.data[0] is not None and type(key.data[0]._callback).__name__ == "Drain"
    ]


def keepers(loop):
    return [h for h in loop._scheduled if type(h._callback).__name__ == "Drain"]


def kill_home(loop):
    """Lets go of the home's keeper (forwarder loop) or reader (watching loop) while the
    loop runs: the home dies."""
    if isinstance(loop, NoReaderLoop):
        (keeper,) = keepers(loop)
        assert keeper.when() > loop.time() + 2**29
        keeper.cancel()
    else:
        (fd,) = drain_fds(loop)
        assert loop.remove_reader(fd)


LOOPS = {"keeper": NoReaderLoop, "watcher": asyncio.SelectorEventLoop}


def run(factory, main, errors=None):
    loop = factory()
    loop.set_exception_handler(
        lambda _loop, context: (errors if errors is not None else []).append(context)
    )
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()


# ---- premature death: the loop still runs ----


@pytest.mark.parametrize("how", ["keeper", "watcher"])
def test_a_task_parked_when_the_home_is_lost_under_a_running_loop_stays_parked_and_is_woken(
    how,
):
    """Found in this round: the parked coroutine was ended (`Shared::loop_died`) and its task
    never resumed. Then (re-homing) the task was resumed and re-parked on a new home. Now
    (succession) the loop still runs, so the home hands over to a successor that watches the
    loop at once (a new keeper or reader): nothing is resumed, the task stays parked on the
    same future, and a thread's wake-up reaches it through the successor."""
    async def main(loop):
        task, trigger, waiter = await parked("rust")
        old = keepers(loop) if how == "keeper" else drain_fds(loop)
        kill_home(loop)
        if how == "keeper":
            new = [keeper for keeper in keepers(loop) if not keeper.cancelled()]
        else:
            new = drain_fds(loop)
        assert len(new) == 1 and new != old, (old, new)  # the successor's
        for _ in range(20):
            assert task._fut_waiter is waiter and not waiter.done() and not task.done()
            await asyncio.sleep(0)
        trigger.fire_from_thread()
        return await asyncio.wait_for(outcome(task), 30), waiter.done()

    assert run(LOOPS[how], main) == (("value", "woken"), True)


@pytest.mark.parametrize("how", ["keeper", "watcher"])
@pytest.mark.parametrize("fire", ["fire", "fire_from_thread"])
def test_a_wake_up_queued_when_the_home_dies_under_a_running_loop_is_not_lost(how, fire):
    """A wake-up that is queued on the home (from a thread; on the loop's thread too with the
    limited API) when the home is lost under the running loop moves to the successor's queue,
    which delivers it."""
    async def main(loop):
        task, trigger, _waiter = await parked("rust")
        getattr(trigger, fire)()
        kill_home(loop)
        return await outcome(task)

    assert run(LOOPS[how], main) == ("value", "woken")


@pytest.mark.parametrize("how", ["keeper", "watcher"])
def test_a_coroutine_that_delegates_when_the_home_dies_under_a_running_loop_finishes(how):
    """A coroutine whose wait is a Python awaitable's (delegation) needs no wake-up of the
    home: it runs on to its end."""
    async def main(loop):
        future = loop.create_future()
        task = loop.create_task(m.await_py(future))
        await until(lambda: task._fut_waiter is future)
        kill_home(loop)
        future.set_result(3)
        return await outcome(task)

    assert run(LOOPS[how], main) == ("value", 3)


@pytest.mark.parametrize("how", ["keeper", "watcher"])
def test_a_task_cancelled_when_the_home_dies_under_a_running_loop_is_cancelled(how):
    """The task stays parked through the succession, and its cancellation reaches it as on
    any home."""
    async def main(loop):
        task, _trigger, _waiter = await parked("rust")
        kill_home(loop)
        task.cancel("bye")
        return await outcome(task)

    assert run(LOOPS[how], main) == ("cancelled", ("bye",) if sys.version_info >= (3, 11) else ())


@pytest.mark.parametrize("how", ["keeper", "watcher"])
def test_a_cancelled_keeper_with_nothing_parked_lets_a_new_home_serve_the_loop(how):
    async def main(loop):
        assert await park_once(1) == 1
        kill_home(loop)
        gc.collect()
        m.pyo3_async_stats()
        return [
            await asyncio.wait_for(outcome(m.yield_now(3)), 1),
            await asyncio.wait_for(outcome(m.sleep(0.001, 5)), 1),
            await asyncio.wait_for(outcome(m.from_thread(7)), 1),
        ]

    assert run(LOOPS[how], main) == [("value", 4), ("value", 5), ("value", 7)]


@pytest.mark.parametrize("how", ["keeper", "watcher"])
@pytest.mark.parametrize("which", ["sleep", "from_thread"])
def test_a_new_rust_coroutine_after_a_premature_death_gets_a_new_home(how, which):
    """Found in this round: while the task parked at the death kept the dead home, a new
    coroutine of the loop was handed that home, and its wake-ups from tokio or threads were
    dropped (a silent hang). Then it failed with a RuntimeError ("lost this event loop"). Now
    the registry hands out a new home for a loop whose home died (`Keyed::retired`)."""
    async def main(loop):
        task, trigger, _waiter = await parked("rust")
        kill_home(loop)
        coroutine = m.sleep(0.001, 5) if which == "sleep" else m.from_thread(5)
        try:
            # A bound on a hang, not synchronisation: it takes a millisecond when it works.
            got = await asyncio.wait_for(outcome(coroutine), 5)
        finally:
            trigger.fire()
            await outcome(task)
        return got

    assert run(LOOPS[how], main) == ("value", 5)


# ---- the keeper as a visible timer ----


class ClockedLoop(NoReaderLoop):
    """A virtual-clock loop (as test tools do): when idle, its clock jumps to the next timer."""

    offset = 0.0

    def time(self):
        return super().time() + self.offset

    def _run_once(self):
        if not self._ready and self._scheduled:
            self.offset += max(0.0, self._scheduled[0]._when - self.time())
        super()._run_once()


def clocked_program(kind):
    loop = ClockedLoop()
    loop.set_exception_handler(lambda _loop, _context: None)
    times = []

    async def main():
        for _ in range(2):
            if kind == "native":
                await asyncio.to_thread(time.sleep, 0.001)
            else:
                await m.sleep(0.001, 1)
            times.append(loop.time())
        await asyncio.sleep(5)  # virtual: instant
        return "done"

    task = loop.create_task(main())
    # A bound on a hang (a timer that never fires), not synchronisation.
    watchdog = threading.Timer(1.0, lambda: loop.call_soon_threadsafe(loop.stop))
    watchdog.start()
    try:
        try:
            loop.run_until_complete(task)
        except RuntimeError:
            pass
        return task.done(), all(math.isfinite(t) for t in times)
    finally:
        watchdog.cancel()
        task.cancel()
        loop.close()


def test_a_virtual_clock_loop_runs_the_native_program():
    assert clocked_program("native") == (True, True)


def test_a_virtual_clock_loop_runs_the_rust_program():
    """The clock jumps to the keeper (some 34 years on), which fires and disarms: the home
    lives on, and the loop's later timers fire."""
    assert clocked_program("rust") == (True, True)


@pytest.mark.parametrize("factory", [NoReaderLoop, asyncio.SelectorEventLoop])
def test_an_idle_loop_with_a_keeper_does_not_spin(factory):
    selector = selectors.DefaultSelector()
    timeouts = []
    select = selector.select

    def counting(timeout=None):
        timeouts.append(timeout)
        return select(timeout)

    selector.select = counting
    loop = factory(selector)

    async def main():
        await m.sleep(0.001, 1)
        timeouts.clear()
        await m.sleep(0.05, 1)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert len(timeouts) < 10, timeouts
    assert all(t is None or t == 0 or t >= 3600 for t in timeouts), timeouts


@pytest.mark.parametrize("factory", [NoReaderLoop, NoReaderUvloop])
def test_the_keeper_is_one_timer_that_never_fires_across_runs_and_debug(factory):
    loop = factory()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.0
    errors = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        for i in range(3):
            assert loop.run_until_complete(m.sleep(0.001, i)) == i
            loop.call_soon(loop.stop)
            loop.run_forever()
        if isinstance(loop, NoReaderLoop):
            assert len(keepers(loop)) == 1
            assert "Drain" in repr(keepers(loop)[0])
    finally:
        loop.close()
    assert errors == []


@pytest.mark.parametrize("factory", [asyncio.SelectorEventLoop, uvloop.Loop])
def test_a_debug_loop_serves_a_thread_that_runs_no_python_code(factory):
    """Found with the test above on 3.15 (it was skipped there as a hang): uvloop 0.23 on
    3.15, in debug mode, fails `call_soon_threadsafe` on a thread without a Python frame (its
    source traceback reads a frame the thread lacks: `AttributeError`). The forwarder's thread
    is one, and so is a Rust thread that first reaches a loop: the refusal read as the loop's
    death, so wake-ups were dropped (the hang) and `EventLoop::asyncio(loop).spawn(...)` said
    the running loop was closed. Both now call from a Python frame (`call_in_a_frame`).

    The call below runs on a thread started by `_thread`, through C callables only
    (`list.extend` over a `starmap`), so that no Python frame is on it."""
    loop = factory()
    loop.set_debug(True)
    unraisable = []
    started, done = threading.Event(), threading.Lock()
    done.acquire()
    thread = threading.Thread(target=lambda: (loop.call_soon(started.set), loop.run_forever()))
    thread.start()
    started.wait()

    async def seven():
        return 7

    results = []
    calls = itertools.chain(
        itertools.starmap(m.sync_await_on, [(loop, seven())]),
        itertools.starmap(done.release, [()]),
    )
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        _thread.start_new_thread(results.extend, (calls,))
        # A bound on a failure (the thread then never releases), not synchronisation.
        released = done.acquire(timeout=60)
    finally:
        sys.unraisablehook = hook
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
    assert [(u.exc_type, str(u.exc_value)) for u in unraisable] == []
    assert released and results == [7, None]


# ---- death at close ----


@pytest.mark.parametrize("factory", [NoReaderLoop, NoReaderUvloop])
def test_close_with_parked_tasks_streams_and_thread_wakes_ends_them(factory):
    loop = factory()
    errors = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context.get("message", "")))
    kept = {}

    async def main():
        task, trigger, _waiter = await parked("rust")
        stream = m.endless(1, m.Probe())
        assert await stream.__anext__() == 0
        nxt = asyncio.ensure_future(stream.__anext__())
        await until(lambda: nxt._fut_waiter is not None)
        slow = asyncio.ensure_future(m.sleep(30, 1))
        await until(lambda: slow._fut_waiter is not None)
        kept.update(task=task, trigger=trigger, stream=stream, nxt=nxt, slow=slow)
        return weakref.ref(loop)

    ref = loop.run_until_complete(main())
    loop.close()
    loop.close()  # twice
    kept["trigger"].fire_from_thread()
    coroutines = [kept[k].get_coro() for k in ("task", "slow")]
    assert all(c.cr_state == "CORO_CLOSED" for c in coroutines), [c.cr_state for c in coroutines]
    del loop, coroutines
    kept.clear()
    assert collected([ref])
    assert not [e for e in errors if "destroyed but it is pending" not in e], errors


def test_a_no_reader_loop_in_a_thread_closed_while_woken_from_main_ends_all():
    ready = threading.Event()
    state = {}

    def body():
        loop = NoReaderLoop()
        loop.set_exception_handler(lambda _loop, _context: None)

        async def main():
            triggers = [m.Trigger() for _ in range(20)]
            tasks = [loop.create_task(t.wait(i)) for i, t in enumerate(triggers)]
            await until(lambda: all(t._fut_waiter is not None for t in tasks))
            state.update(triggers=triggers, tasks=tasks)
            ready.set()
            # half woken from main; then the loop closes with the rest parked
            await until(lambda: sum(t.done() for t in tasks) >= 10, passes=1_000_000)

        loop.run_until_complete(main())
        loop.close()
        state["closed"] = True

    thread = threading.Thread(target=body)
    thread.start()
    assert ready.wait(5)
    for trigger in state["triggers"]:
        trigger.fire_from_thread()
    thread.join(5)
    assert not thread.is_alive()
    assert state["closed"]
    assert all(t.done() or t.get_coro().cr_state == "CORO_CLOSED" for t in state["tasks"])


def unclosed_warnings(kind):
    # Earlier tests' garbage first, with its own warnings: only this loop's are compared.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collected([])
    loop = NoReaderLoop()
    coroutine = m.sleep(0.001, 1) if kind == "rust" else asyncio.sleep(0, 1)
    assert loop.run_until_complete(coroutine) == 1
    ref = weakref.ref(loop)
    del loop, coroutine
    deadline = time.monotonic() + 30
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Until the loop is collected, with a warning or without a word (a warned loop stays
        # alive in the record). Not a single collection: the forwarder thread may hold the
        # loop's home, and so the loop, a moment after the run (as `collected` says), which a
        # loaded machine made a flaky failure (no warning here, the loop collected later).
        while not caught and ref() is not None and time.monotonic() < deadline:
            m.pyo3_async_stats()  # PyO3's deferred decrefs first (see `collected`)
            gc.collect()
    # A warning's `source` (the loop, for "unclosed event loop") keeps it until the record goes.
    summary = sorted({(w.category.__name__, str(w.message).split(" <")[0]) for w in caught})
    del caught
    assert collected([ref])
    return summary


def test_an_unclosed_no_reader_loop_is_collected_with_the_native_warnings():
    assert unclosed_warnings("rust") == unclosed_warnings("native")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner")
def test_runner_with_a_no_reader_loop_factory_and_anyio():
    import anyio

    async def main():
        async with anyio.create_task_group() as group:
            group.start_soon(m.sleep, 0.001, 1)
            group.start_soon(m.from_thread, 2)
        return await m.sleep(0.001, 3)

    with asyncio.Runner(loop_factory=NoReaderLoop) as runner:
        assert runner.run(main()) == 3
        loop = runner.get_loop()
        assert len(keepers(loop)) == 1
    assert loop.is_closed()


def test_uvloop_accepts_the_keeper_without_firing_it():
    out = run_script(
        """
        import asyncio, sys
        sys.path.insert(0, %r)
        import pyo3_async_pytests as m
        from test_attack_round13 import NoReaderUvloop
        loop = NoReaderUvloop()
        fired = []
        async def main():
            for i in range(20):
                assert await m.sleep(0.001, i) == i
            return len(loop._timers) if hasattr(loop, "_timers") else -1
        print(loop.run_until_complete(main()))
        loop.close()
        print("ok")
        """
        % (__import__("os").path.dirname(__file__),)
    )
    assert out.split()[-1] == "ok"

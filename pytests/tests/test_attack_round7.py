"""Attack round 7, on commits 475dc44 and e939b30: how a trio wake-up reaches its task
(`TrioTask::whereabouts`, the abort function, the deferred second look of a wake-up that finds
its task running) and `Coroutine.close()` delivering a parked trio wake-up.

What was attacked:
- rule 2's deferred look (then `run_sync_soon(TrioTask.reschedule)`, now the home's queue) landing on a later suspension
  of the same coroutine (the `TrioTask` is shared by all of them): a proxy steps the coroutine
  by hand, wakes it on the trio thread while its task runs, resumes it by hand with trio's
  outcome (a second suspension), passes that trap on, and threads wake it again; the
  spurious reschedule only polls the future again (passes);
- rule 5, `close()` of a coroutine whose trio task is parked on it: from another task, from a
  plain thread (no loop), twice, through a native wrapper (`outer.close()` closes it), on an
  async generator's `__anext__`, racing a storm of thread wakes, from the asyncio host of a
  trio guest run (outside trio's steps), from the thread of another trio run: the task always
  goes on with "cannot reuse already awaited coroutine" (passes); on asyncio the task stays
  parked and is cancellable (passes);
- `aclose()` of an async generator whose `__anext__` another trio task awaits: refused as a
  native generator refuses it (passes);
- a coroutine resumed by hand from another task while its trio task is parked on it:
  `send(None)` is refused and leaves the suspension as it was (the wake-up still resumes the
  task with its value); `throw` ends the coroutine, its parked wake-up is dropped (close()
  delivers it, a throw does not), and the task waits until cancelled, as it would for the wait
  a native coroutine abandons; the cancellation ends it (passes);
- regressions in ordinary use: many tasks awaiting Rust futures woken from many threads while
  deadlines cancel some of them, on asyncio, uvloop and trio (exact counts: each future
  completes at most once, and exactly when its task got its value) (passes);
- FOUND, FIXED (rule 6): a coroutine made with a cancel handle, parked in trio's trap and
  resumed by hand with `send(None)`, did not raise the "resumed by hand" `RuntimeError`: the
  error was handed to the future as its *cancellation* (`Driver::send` passed every error of
  `Parker::resume` to `Driver::deliver`). Now `Parker::check_resumption` refuses it before
  anything changes, as asyncio's refuses a second driver.
- FOUND, FIXED (rule 2, a deadlock): a wake-up that finds its task running called
  `token.run_sync_soon(TrioTask.reschedule)` inside the waker; trio's `run_sync_soon` writes
  its wake-up socket with the GIL released. A waker woken under its own lock (WakerStash.wake
  here; event-listener and many channels do the same) while another Python thread takes that
  lock while attached deadlocked the process. The second look now goes through the home's own
  queue (Rust-side, no GIL release).

Scenarios that could hang or corrupt a trio run run in a fresh interpreter, with the watchdog of
test_attack_round6.py.
"""

import sys

import pytest

from helpers import run_isolated

try:
    import pyo3_async_pytests as m
except ImportError:  # collected by pytest only in the suite's own environment
    m = None


def watchdog(seconds=3.0, describe=lambda: ""):
    from test_attack_round6 import Watchdog

    return Watchdog(seconds, describe)


CLOSED = "RuntimeError('cannot reuse already awaited coroutine')"


async def outcome_of(awaitable, out):
    try:
        out.append(await awaitable)
    except BaseException as exc:  # noqa: BLE001 - what the task saw is the point
        out.append(repr(exc))


async def wait_for(out, seconds=2.0):
    """Polls (real time: a hung task never lets `out` fill) until `out` has something; False
    when it never does."""
    import trio

    with trio.move_on_after(seconds):
        while not out:
            await trio.sleep(0.005)
        return True
    return False


# ---- rule 2: the deferred look lands on a later suspension (passes) ----


def deferred_look_on_a_later_suspension():
    import threading
    import types

    import outcome
    import trio

    dog = watchdog()

    @types.coroutine
    def proxy(coroutine, stash):
        trap = coroutine.send(None)  # parks for this task
        stash.wake()  # on the trio thread, the task running: the wake-up looks again later
        # Resumed by hand with trio's own answer: a second suspension, same TrioTask.
        trap = coroutine.send(outcome.Value(None))
        while True:
            try:
                value = yield trap
            except BaseException as exc:
                try:
                    trap = coroutine.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    trap = coroutine.send(value)
                except StopIteration as stop:
                    return stop.value

    results = []

    async def driven(stash, times):
        results.append(await proxy(stash.wait(times), stash))

    async def main():
        for _ in range(30):
            stash = m.WakerStash()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(driven, stash, 3)
                await trio.testing.wait_all_tasks_blocked()
                for _ in range(5):
                    stash.wake_from_threads(times=1, threads=1)
                    await trio.sleep(0)
            dog.tick()
        dog.stopped.set()

    import trio.testing  # noqa: F401

    trio.run(main)
    assert results == [None] * 30, results


def test_the_deferred_look_of_a_wake_up_may_land_on_a_later_suspension():
    run_isolated(deferred_look_on_a_later_suspension, timeout=30)


# ---- BUG: the deferred look's run_sync_soon releases the GIL inside the waker ----


def deferred_look_under_a_lock():
    """`WakerStash.wake()` wakes while holding the stash's lock (as event-listener and many
    channels wake under their own lock); another Python thread takes that lock while attached
    (`wake_from_threads`). A wake-up that finds its task running calls
    `token.run_sync_soon` inline, whose socket write releases the GIL: the other thread gets the
    GIL and blocks on the lock the trio thread holds, which waits for the GIL. The direct
    reschedule (`stash.wake()` while the task waits: `Whereabouts::Here`) survives the same
    storm (300 rounds tried)."""
    import faulthandler
    import threading
    import types

    import trio

    faulthandler.dump_traceback_later(8, exit=True)  # the watchdog needs the GIL too

    @types.coroutine
    def step_wake_and_pass_on(coroutine, stash):
        trap = coroutine.send(None)
        stash.wake()  # the task is running: Whereabouts::Running
        while True:
            try:
                value = yield trap
            except BaseException as exc:
                trap = coroutine.throw(exc)
            else:
                try:
                    trap = coroutine.send(value)
                except StopIteration as stop:
                    return stop.value

    async def main():
        for _ in range(300):
            stash, stop = m.WakerStash(), threading.Event()
            stash.wake()  # counts a wake: the stash has no waker yet
            first = stash.wait(10**9)
            first.send(None)  # stashes a waker, so that the storm has something to wake
            first.close()

            def storm(stash=stash, stop=stop):
                while not stop.is_set():
                    stash.wake_from_threads(times=5, threads=2)

            thread = threading.Thread(target=storm)
            thread.start()
            try:
                with trio.move_on_after(0.002):
                    await step_wake_and_pass_on(stash.wait(10**9), stash)
            finally:
                stop.set()
                thread.join()
        faulthandler.cancel_dump_traceback_later()

    trio.run(main)


def test_a_wake_up_that_finds_its_task_running_does_not_release_the_gil_under_the_wakers_lock():
    run_isolated(deferred_look_under_a_lock, timeout=20)


# ---- rule 5: close() under a parked trio task (passes) ----


def closed_under_a_parked_trio_task():
    import threading

    import trio
    import trio.testing

    dog = watchdog(5)
    seen = []

    def plain(holder):
        holder["close"] = (coroutine := m.Trigger().wait(1)).close
        return coroutine

    def native_wrapper(holder):
        inner = m.Trigger().wait(1)

        async def outer():
            return await inner

        wrapper = outer()
        holder["close"] = wrapper.close  # GeneratorExit closes `inner` too

        async def root():
            return await wrapper

        return root()

    def generator_step(holder):
        generator = m.endless(0, m.Probe())
        holder["generator"] = generator
        step = generator.__anext__()
        holder["close"] = step.close

        async def root():
            return await step

        return root()

    def from_thread(close):
        def run():
            thread = threading.Thread(target=close)
            thread.start()
            thread.join()

        return run

    def twice(close):
        def run():
            close()
            close()

        return run

    def racing_a_storm(holder):
        stash = m.WakerStash()
        coroutine = stash.wait(10**9)

        def close():
            thread = threading.Thread(target=stash.wake_from_threads, kwargs={"times": 500, "threads": 2})
            thread.start()
            coroutine.close()
            thread.join()

        holder["close"] = close
        return coroutine

    cases = []
    for make in (plain, native_wrapper, generator_step):
        cases += [(make, lambda close: close), (make, from_thread), (make, twice)]
    cases += [(racing_a_storm, lambda close: close)] * 20

    async def main():
        for make, how in cases:
            holder, out = {}, []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(outcome_of, make(holder), out)
                await trio.testing.wait_all_tasks_blocked()
                how(holder["close"])()
                if not await wait_for(out):
                    out.append("HUNG")
                    nursery.cancel_scope.cancel()
            seen.append((make.__name__, out))
            dog.tick()
        dog.stopped.set()

    trio.run(main)
    bad = [case for case in seen if case[1] != [CLOSED]]
    assert not bad, bad


def test_close_lets_a_parked_trio_task_go_on_from_anywhere():
    run_isolated(closed_under_a_parked_trio_task, timeout=40)


def closed_from_the_host_of_a_guest_run():
    import asyncio

    import trio
    import trio.testing

    dog = watchdog(5)
    shared = {}

    async def trio_main():
        results = []
        for _ in range(10):
            out = []
            coroutine = m.Trigger().wait(1)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(outcome_of, coroutine, out)
                await trio.testing.wait_all_tasks_blocked()
                shared["to_close"].put_nowait(coroutine)
                if not await wait_for(out):
                    out.append("HUNG")
                    nursery.cancel_scope.cancel()
            results.append(out)
            dog.tick()
        shared["to_close"].put_nowait(None)
        return results

    async def host():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        shared["to_close"] = asyncio.Queue()
        trio.lowlevel.start_guest_run(
            trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
            host_uses_signal_set_wakeup_fd=True,
        )
        while (coroutine := await shared["to_close"].get()) is not None:
            coroutine.close()  # on the host, outside trio's steps: reschedule refuses there
        return (await done).unwrap()

    results = asyncio.run(host())
    dog.stopped.set()
    assert results == [[CLOSED]] * 10, results


def test_close_from_the_asyncio_host_of_a_trio_guest_run():
    run_isolated(closed_from_the_host_of_a_guest_run, timeout=30)


def closed_from_another_trio_run():
    import threading

    import trio
    import trio.testing

    dog = watchdog(5)
    handoff, results = [], []
    ready = threading.Event()
    finished = threading.Event()

    async def parked_run():
        for _ in range(10):
            out = []
            coroutine = m.Trigger().wait(1)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(outcome_of, coroutine, out)
                await trio.testing.wait_all_tasks_blocked()
                handoff.append(coroutine)
                ready.set()
                if not await wait_for(out):
                    out.append("HUNG")
                    nursery.cancel_scope.cancel()
            results.append(out)
            dog.tick()
        finished.set()

    async def closing_run():
        while not finished.is_set():
            if handoff:
                handoff.pop().close()  # inside a step of another trio run, on its thread
            await trio.sleep(0.001)

    other = threading.Thread(target=trio.run, args=(closing_run,))
    other.start()
    trio.run(parked_run)
    other.join()
    dog.stopped.set()
    assert results == [[CLOSED]] * 10, results


def test_close_from_the_thread_of_another_trio_run():
    run_isolated(closed_from_another_trio_run, timeout=30)


async def closed_under_an_asyncio_task():
    """asyncio tasks stay parked on purpose; the task is still cancellable."""
    import asyncio

    import sniffio

    if sniffio.current_async_library() != "asyncio":
        return
    for _ in range(20):
        coroutine = m.Trigger().wait(1)
        task = asyncio.ensure_future(coroutine)
        await asyncio.sleep(0)
        coroutine.close()
        for _ in range(3):
            await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        try:
            await task
        except (RuntimeError, asyncio.CancelledError):  # a closed native coroutine: RuntimeError
            pass


def test_close_under_an_asyncio_task_leaves_it_cancellable(anyio_backend, loop_name):
    if loop_name == "trio":
        pytest.skip("asyncio only")
    run_isolated(closed_under_an_asyncio_task, anyio_backend=anyio_backend)


def aclose_while_another_task_awaits_a_step():
    import trio
    import trio.testing

    async def main():
        probe = m.Probe()
        generator = m.endless(1, probe)
        assert await generator.__anext__() == 0
        out = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outcome_of, generator.__anext__(), out)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(RuntimeError, match="already running"):
                await generator.aclose()
            nursery.cancel_scope.cancel()
        assert out and "Cancelled" in out[0], out

    trio.run(main)


def test_aclose_while_another_trio_task_awaits_a_step_is_refused():
    run_isolated(aclose_while_another_task_awaits_a_step, timeout=30)


# ---- resumed by hand from another task (passes) ----


def resumed_from_another_task():
    import trio
    import trio.testing

    dog = watchdog(5)

    def send_none(coroutine):
        with pytest.raises(RuntimeError, match="resumed by hand"):
            coroutine.send(None)

    def throw(coroutine):
        with pytest.raises(ValueError):
            coroutine.throw(ValueError("from another task"))

    async def main():
        # Refused, the hand resumption leaves the suspension as it was: the wake-up still
        # resumes the task, with the future's value.
        out, trigger = [], m.Trigger()
        coroutine = trigger.wait(1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outcome_of, coroutine, out)
            await trio.testing.wait_all_tasks_blocked()
            send_none(coroutine)
            trigger.fire()
        assert out == [1], out
        dog.tick()
        # A throw ends the coroutine: its future is gone, nothing wakes the task.
        out, trigger = [], m.Trigger()
        coroutine = trigger.wait(1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outcome_of, coroutine, out)
            await trio.testing.wait_all_tasks_blocked()
            throw(coroutine)
            trigger.fire()
            await trio.testing.wait_all_tasks_blocked()
            assert out == [], out  # close() would have rescheduled it
            nursery.cancel_scope.cancel()  # the abort succeeds: the coroutine is closed
        assert out == [CLOSED], out
        dog.tick()
        dog.stopped.set()

    trio.run(main)


def test_a_coroutine_resumed_by_hand_from_another_task_leaves_its_task_cancellable():
    run_isolated(resumed_from_another_task, timeout=30)


# ---- BUG (rule 6): a cancel-handle coroutine resumed by hand is "cancelled" ----


def resumed_by_hand_with_a_cancel_handle():
    import trio

    async def main():
        failures = []
        log = []
        coroutine = m.macro_until_cancelled(log)
        coroutine.send(None)  # parks in trio's trap; the trap goes nowhere
        try:
            coroutine.send(None)
        except RuntimeError as exc:
            assert "resumed by hand" in str(exc), exc
        else:
            failures.append("until_cancelled: no error")
        if log:
            failures.append(f"macro_until_cancelled saw a cancellation: {log}")
        coroutine.close()

        probe = m.Probe()
        coroutine = m.cleanup_on_cancel(probe, "result")
        coroutine.send(None)
        try:
            trap = coroutine.send(None)
        except RuntimeError as exc:
            assert "resumed by hand" in str(exc), exc
        else:
            failures.append(f"cleanup_on_cancel: send(None) returned {trap!r} (its cleanup started)")
        coroutine.close()
        assert not failures, failures

    trio.run(main)


def test_a_cancel_handle_coroutine_resumed_by_hand_on_trio_gets_the_error_not_a_cancellation():
    run_isolated(resumed_by_hand_with_a_cancel_handle, timeout=30)


# ---- ordinary use: many tasks, thread wakes, deadlines (passes) ----


async def storms_under_cancellation():
    import random

    import anyio

    dog = watchdog(10)
    rng = random.Random(7)
    for round_ in range(6):
        n = 200
        storm = m.Storm(n)
        got, cancelled = [None] * n, [False] * n
        async with anyio.create_task_group() as group:

            async def waiter(i, deadline):
                with anyio.move_on_after(deadline) as scope:
                    got[i] = await storm.wait(i)
                cancelled[i] = scope.cancelled_caught and got[i] is None

            for i in range(n):
                group.start_soon(waiter, i, rng.choice([0, 0.0005, 0.002, 5]))
            await anyio.wait_all_tasks_blocked()
            await anyio.sleep(0.001 * (round_ % 3))
            storm.fire_from_threads(4, 2, 3)
        completions = storm.completions()
        for i in range(n):
            if got[i] is not None:
                assert got[i] == i and completions[i] == 1, (i, got[i], completions[i])
            else:
                assert cancelled[i] and completions[i] == 0, (i, cancelled[i], completions[i])
        dog.tick()
    # from_thread and Trigger under deadlines: exact counts.
    for _ in range(4):
        results, triggers = [], [m.Trigger() for _ in range(100)]
        async with anyio.create_task_group() as group:

            async def one(i):
                with anyio.move_on_after(rng.choice([0, 0.001, 5])):
                    results.append(("thread", await m.from_thread(i)))
                with anyio.move_on_after(rng.choice([0, 0.001, 5])):
                    results.append(("trigger", await triggers[i].wait(i)))

            for i in range(100):
                group.start_soon(one, i)
            await anyio.sleep(0.0005)
            for trigger in triggers:
                trigger.fire_from_thread()
        assert len(results) == len(set(results)), results
        assert all(kind in ("thread", "trigger") for kind, _ in results)
        dog.tick()
    dog.stopped.set()


def test_many_tasks_woken_from_threads_under_cancellation_count_exactly(anyio_backend, loop_name):
    run_isolated(storms_under_cancellation, anyio_backend=anyio_backend, timeout=60)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))

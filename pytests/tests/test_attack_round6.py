"""Attack on commit 475dc44: a trio wake-up reschedules its task only while the task waits in
the coroutine's own trap (`TrioTask::waits_here`: `task._abort_func is` the coroutine's
`TrioTask`, or `_abort_func is None` and `task.custom_sleep_data is` it after a refused abort).

What was attacked:
- refused aborts (a cancel-handle future, `m.cleanup_on_cancel`): nested scopes cancelled one
  after the other, a shield lifted while the outer scope is cancelled, many rounds; a wake-up
  queued from a thread and the scope cancelled in the same step (the abort refused because a
  wake-up is on its way); storms of thread wakes racing short deadlines (passes);
- the reference cycle `task.custom_sleep_data -> TrioTask -> task` left by a refused abort: the
  tasks are freed once they end (passes);
- trio guest mode hosted on asyncio: thread wakes, refused aborts, a wake-up queued at the
  cancel, wake storms, tokio timers and streams (passes);
- anyio on trio (and asyncio, uvloop): async generators cancelled mid-stream, `PyFuture`
  delegation of a cancel-handle coroutine, joins, timeouts racing tokio timers (passes);
- a coroutine sent by hand, then awaited: the same error as a native coroutine (passes);
- FOUND, FIXED (a regression of 475dc44): a coroutine stepped by hand whose trap is then passed
  on to trio (an "eager start" or instrumenting `__await__` proxy), woken on the trio thread in
  between: the wake-up found `_abort_func` not yet set and was dropped; the task waited for
  ever, and could not even be cancelled (the abort was refused: a wake-up "is on its way").
  Now a wake-up that finds its task running looks again after the step (`Whereabouts::Running`);
- FOUND, FIXED (older): a coroutine closed while its task waits after a refused abort: the
  close dropped the parked wake-up, trio never asks the abort again, the task waited for ever.
  Now `close()` delivers a parked trio wake-up (the task finds the coroutine closed);
- FOUND, FIXED (contrived, older in kind): a hand-sent coroutine's trap yielded by another task,
  whose cancellation was refused: the refusal wrote `custom_sleep_data` of the task that sent
  it, which sleeps in a `trio.Lock` (a `ParkingLot`): cancelling that task then crashed inside
  trio's ParkingLot abort. Now an abort for a task other than the parker's succeeds (no wake-up
  can reach that task) and marks nothing.
- tried and dropped: a plain `signal.signal` handler that wakes a Rust future between the step
  and trio's bookkeeping stalls the trio run, but so does a plain `trio.Event.set()` from such a
  handler (and an asyncio future's `set_result`): no fair comparison.

Each scenario runs in a fresh interpreter with a watchdog thread that ends it (exit status 3,
with what it saw) when it stops making progress: a hung trio task cannot be cancelled.
"""

import os
import sys
import threading
import types

import pytest

from helpers import run_isolated

try:
    import pyo3_async_pytests as m
except ImportError:  # collected by pytest only in the suite's own environment
    m = None


class Watchdog:
    """Ends the process (status 3) when `progress` has not moved for `seconds`."""

    def __init__(self, seconds=5.0, describe=lambda: ""):
        self.progress = 0
        self.describe = describe
        self.seconds = seconds
        self.stopped = threading.Event()
        threading.Thread(target=self.watch, daemon=True).start()

    def tick(self):
        self.progress += 1

    def watch(self):
        last = -1
        while not self.stopped.wait(self.seconds):
            if self.progress == last:
                print(f"stalled after {last} steps: {self.describe()}", flush=True)
                os._exit(3)
            last = self.progress


# ---- refused aborts, memory (pass) ----


async def refused_aborts():
    import gc
    import weakref

    import anyio
    import anyio.lowlevel

    watchdog = Watchdog()
    # Nested scopes: the inner cancel is refused at the cleanup's second suspension, the outer
    # cancel reaches the coroutine while it cleans up.
    for i in range(100):
        probe = m.Probe()
        with anyio.CancelScope() as outer:
            with anyio.CancelScope() as inner:
                async with anyio.create_task_group() as group:

                    async def cancel_both(inner=inner, outer=outer):
                        await anyio.lowlevel.checkpoint()
                        inner.cancel()
                        await anyio.lowlevel.checkpoint()
                        outer.cancel()

                    group.start_soon(cancel_both)
                    assert await m.cleanup_on_cancel(probe, i) == i
        assert probe.cleaned_up
        watchdog.tick()
    # A shield lifted while the scope around it is cancelled.
    for i in range(50):
        probe = m.Probe()
        with anyio.CancelScope() as outer:
            outer.cancel()
            with anyio.CancelScope(shield=True) as shield:
                async with anyio.create_task_group() as group:

                    async def unshield(shield=shield):
                        await anyio.lowlevel.checkpoint()
                        shield.shield = False

                    group.start_soon(unshield)
                    await m.cleanup_on_cancel(probe, i)
        assert probe.cleaned_up
        watchdog.tick()
    # A wake-up queued from a thread, then the scope cancelled in the same step: on trio the
    # abort is refused (a wake-up is on its way), and that wake-up must still resume the task.
    for i in range(150):
        trigger, results = m.Trigger(), []
        async with anyio.create_task_group() as group:

            async def waiter(trigger=trigger, results=results, i=i):
                with anyio.CancelScope() as scope:
                    results.append(scope)
                    results.append(await trigger.wait(i))

            group.start_soon(waiter)
            await anyio.lowlevel.checkpoint()
            await anyio.wait_all_tasks_blocked()
            trigger.fire_from_thread()
            results[0].cancel()
        assert results[1:] in ([i], []), results
        watchdog.tick()
    # Thread storms racing short deadlines.
    for _ in range(50):
        stash = m.WakerStash()
        async with anyio.create_task_group() as group:

            async def waiter(stash=stash):
                with anyio.move_on_after(0.0005):
                    await stash.wait(1000)

            group.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            thread = threading.Thread(target=stash.wake_from_threads, kwargs={"times": 50, "threads": 2})
            thread.start()
            await anyio.sleep(0.001)
            thread.join()
        watchdog.tick()
    # The cycle a refused abort leaves (task.custom_sleep_data -> TrioTask -> task) ends with
    # the wait: the tasks are freed once they end.
    refs = []
    for i in range(30):
        probe = m.Probe()

        async def child(probe=probe, i=i):
            if sniffio_name() == "trio":
                import trio

                refs.append(weakref.ref(trio.lowlevel.current_task()))
            with anyio.move_on_after(0):
                await m.cleanup_on_cancel(probe, i)

        async with anyio.create_task_group() as group:
            group.start_soon(child)
        assert probe.cleaned_up
        watchdog.tick()
    gc.collect()
    assert not [ref for ref in refs if ref() is not None]
    watchdog.stopped.set()


def sniffio_name():
    import sniffio

    return sniffio.current_async_library()


def test_refused_aborts_and_their_wake_ups(anyio_backend, loop_name):
    run_isolated(refused_aborts, anyio_backend=anyio_backend)


# ---- guest mode (passes) ----


def guest_mode():
    import asyncio

    import trio
    import trio.testing

    watchdog = Watchdog()

    async def trio_main():
        for i in range(100):
            assert await m.from_thread(i) == i
            watchdog.tick()
        for i in range(50):
            probe = m.Probe()
            with trio.move_on_after(0):
                await m.cleanup_on_cancel(probe, i)
            assert probe.cleaned_up
            watchdog.tick()
        for i in range(50):
            trigger, results = m.Trigger(), []
            async with trio.open_nursery() as nursery:

                async def waiter(trigger=trigger, results=results, i=i):
                    with trio.CancelScope() as scope:
                        results.append(scope)
                        results.append(await trigger.wait(i))

                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                trigger.fire_from_thread()
                results[0].cancel()
            assert results[1:] in ([i], []), results
            watchdog.tick()
        for _ in range(30):
            stash = m.WakerStash()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stash.wait, 1)
                await trio.testing.wait_all_tasks_blocked()
                stash.wake_from_threads(times=100, threads=4)
            watchdog.tick()
        assert await m.sleep(0.001, "slept") == "slept"
        assert [item async for item in m.count_from_tokio(20)] == list(range(20))
        return "guest done"

    async def host():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        trio.lowlevel.start_guest_run(
            trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
            host_uses_signal_set_wakeup_fd=True,
        )
        for i in range(50):
            assert await m.from_thread(i) == i
        return (await done).unwrap()

    assert asyncio.run(host()) == "guest done"
    watchdog.stopped.set()


def test_trio_guest_mode_on_asyncio_with_refused_aborts_and_thread_wakes():
    run_isolated(guest_mode)


# ---- anyio, async generators, delegation (passes) ----


async def generators_and_delegation():
    import anyio

    watchdog = Watchdog()
    for _ in range(50):
        probe = m.Probe()
        generator, got = m.endless(3, probe), []
        with anyio.move_on_after(0.001):
            async for item in generator:
                got.append(item)
        await generator.aclose()
        assert got == [0, 1, 2]
        watchdog.tick()
    for i in range(50):
        probe = m.Probe()
        with anyio.move_on_after(0):
            await m.await_py(m.cleanup_on_cancel(probe, i))
        assert probe.cleaned_up
        watchdog.tick()
    for i in range(30):
        probe = m.Probe()
        with anyio.move_on_after(0.0005):
            await m.await_all([m.cleanup_on_cancel(probe, i), anyio.sleep(1)])
        watchdog.tick()
    for _ in range(30):
        assert await m.await_with_timeout(anyio.sleep(0.05), 0.001) == "timeout"
        watchdog.tick()
    async with anyio.create_task_group() as group:
        for i in range(30):
            group.start_soon(m.from_thread, i)

            async def short(i=i):
                with anyio.move_on_after(0.0001):
                    await m.sleep(0.01)

            group.start_soon(short)
    watchdog.stopped.set()


def test_generators_and_delegation_under_cancellation(anyio_backend, loop_name):
    run_isolated(generators_and_delegation, anyio_backend=anyio_backend)


# ---- sent by hand, then awaited (passes) ----


async def sent_by_hand_then_awaited():
    import anyio.lowlevel

    async def native():
        await anyio.lowlevel.checkpoint()

    errors = []
    for coroutine in (m.Trigger().wait(), native()):
        coroutine.send(None)
        try:
            await coroutine
        except RuntimeError as exc:
            errors.append(str(exc))
        coroutine.close()
    assert errors == ["coroutine is being awaited already"] * 2, errors


def test_a_coroutine_sent_by_hand_then_awaited_fails_as_a_native_one(anyio_backend, loop_name):
    run_isolated(sent_by_hand_then_awaited, anyio_backend=anyio_backend)


# ---- BUG: a trap passed on to trio after a wake on the trio thread ----


@types.coroutine
def stepped_first(coroutine, after_first_step):
    """Takes the coroutine's first step by hand, runs `after_first_step()`, then passes the trap
    (and every later one) on to the loop, as `await` would: an "eager start" or an
    instrumenting `__await__` proxy."""
    trap = coroutine.send(None)
    after_first_step()
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


async def woken_before_the_trap_reaches_the_loop():
    import anyio

    task = []
    if sniffio_name() == "trio":
        import trio

        task.append(trio.lowlevel.current_task())

    def describe():
        return "" if not task else f"_abort_func={task[0]._abort_func!r}"

    watchdog = Watchdog(3, describe)
    for i in range(20):
        trigger = m.Trigger()
        # The deadline cannot rescue a lost wake-up on trio: the abort is refused, since the
        # waiter holds a wake-up "on its way" that was already dropped.
        with anyio.move_on_after(1):
            assert await stepped_first(trigger.wait(i), trigger.fire) == i
        watchdog.tick()
    watchdog.stopped.set()


def test_a_wake_up_before_the_trap_reaches_the_loop_resumes_the_task(anyio_backend, loop_name):
    run_isolated(woken_before_the_trap_reaches_the_loop, anyio_backend=anyio_backend, timeout=30)


# ---- BUG: closed while its task waits after a refused abort ----


def closed_after_a_refused_abort():
    import trio
    import trio.testing

    watchdog = Watchdog(3, lambda: "the task that awaited the closed coroutine never resumed")

    async def main():
        for _ in range(5):
            probe, coroutine, seen = m.Probe(), None, []

            async def waiter(task_status=trio.TASK_STATUS_IGNORED):
                seen.append(trio.lowlevel.current_task())
                task_status.started()
                try:
                    await coroutine
                except RuntimeError as exc:  # as a native coroutine closed under its awaiter
                    seen.append(str(exc))

            coroutine = m.cleanup_on_cancel(probe, "result")
            async with trio.open_nursery() as nursery:
                await nursery.start(waiter)
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True):
                    # The first abort succeeds; the cleanup parks again, and trio's second
                    # attempt is refused (the future handles its cancellation itself).
                    for _ in range(10_000):
                        if seen[0].custom_sleep_data is not None:
                            coroutine.close()
                            break
                        await trio.lowlevel.checkpoint()
            assert probe.dropped
            watchdog.tick()

    trio.run(main)
    watchdog.stopped.set()


def test_closing_a_coroutine_after_a_refused_abort_lets_its_task_go_on():
    run_isolated(closed_after_a_refused_abort, timeout=30)


# ---- BUG (contrived): a trap yielded by another task than the one that sent it ----


@types.coroutine
def pass_on(coroutine, trap):
    """Yields `trap` (the coroutine's, obtained elsewhere) to the loop, then drives it."""
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


def trap_yielded_by_another_task():
    import trio
    import trio.testing

    watchdog = Watchdog(3)

    async def main():
        trigger, lock, shared = m.Trigger(), trio.Lock(), {}
        await lock.acquire()
        async with trio.open_nursery() as nursery:

            async def sender(task_status=trio.TASK_STATUS_IGNORED):
                coroutine = trigger.wait("value")
                shared["trap"] = coroutine.send(None)  # parks for this task
                shared["coroutine"] = coroutine
                with trio.CancelScope() as scope:
                    shared["sender"] = scope
                    task_status.started()
                    await lock.acquire()  # sleeps in the lock's ParkingLot

            async def awaiter(task_status=trio.TASK_STATUS_IGNORED):
                with trio.CancelScope() as scope:
                    shared["awaiter"] = scope
                    task_status.started()
                    await pass_on(shared["coroutine"], shared["trap"])

            await nursery.start(sender)
            await nursery.start(awaiter)
            await trio.testing.wait_all_tasks_blocked()
            trigger.fire_from_thread()  # a wake-up on its way...
            shared["awaiter"].cancel()  # ...so this abort is refused
            await trio.testing.wait_all_tasks_blocked()
            watchdog.tick()
            # The task that sent the coroutine by hand has nothing to do with that abort.
            try:
                shared["sender"].cancel()
            except BaseException as exc:  # trio's ParkingLot abort, on a task it did not park
                print(f"cancelling the sender raised {exc!r}", flush=True)
                os._exit(4)
            watchdog.tick()
            nursery.cancel_scope.cancel()

    trio.run(main)
    watchdog.stopped.set()


def test_a_refused_abort_leaves_the_task_that_sent_the_coroutine_alone():
    run_isolated(trap_yielded_by_another_task, timeout=30)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))

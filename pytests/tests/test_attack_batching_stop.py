"""Attacks on the pump's stop (`gone`, `flush_soon`'s answer, `stop()` before `aclose()`),
on every loop. No sleeps synchronise anything: waits have bounding timeouts that only bound
a failure."""

import sys
import threading

import anyio
import pytest

import pyo3_async_pytests as m
from test_attack_batching import (
    BOUND,
    DropInNextStep,
    FirstItemThenDrop,
    Stop,
    pump_channel,
    pumps,
    queued_jobs,
    spin_until,
    until,
)

pytestmark = pytest.mark.anyio


def record_reports(loop_name, monkeypatch):
    """What the loop's exception handler (asyncio) or sys.unraisablehook (trio) receives."""
    reports = []
    monkeypatch.setattr(sys, "unraisablehook", lambda args: reports.append(args.exc_value))
    if loop_name != "trio":
        import asyncio

        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: reports.append(context.get("exception"))
        )
    return reports


# ---- a cancel scope the generator holds open across a yield ----


@pytest.mark.parametrize("capacity", [1, 2, 8])
async def test_generator_scope_open_across_a_yield_survives_the_drop(
    loop_name, monkeypatch, capacity
):
    # A generator suspended at a yield inside its own cancel scope when the consumer leaves:
    # a plain `async for` + break + aclose() exits that scope cleanly (GeneratorExit only).
    reports = record_reports(loop_name, monkeypatch)
    closed = anyio.Event()

    def numbers(log):
        async def gen():
            try:
                with anyio.CancelScope():
                    for i in range(100):
                        yield i
                    await anyio.sleep_forever()
            except BaseException as exc:
                log.append(type(exc).__name__)
                raise
            finally:
                log.append("closed")
                closed.set()

        return gen()

    plain_log = []
    await stopped_at_the_first_item(numbers(plain_log))
    assert plain_log == ["GeneratorExit", "closed"]

    closed = anyio.Event()
    log = []
    keep = numbers(log)  # held: only aclose() can close it, not the collector
    if capacity == 1:
        assert await m.take_async_iter(keep, 1) == [0]
    else:
        with pytest.raises(Stop):
            await m.collect_async_iter(keep, capacity, on_item=_raise_stop)
    with anyio.fail_after(BOUND):
        await closed.wait()
    await until(lambda: pumps() == 0 and queued_jobs() == 0, "the pump to end")
    assert log == ["GeneratorExit", "closed"]
    assert reports == []


@pytest.mark.parametrize("capacity", [1, 2, 8])
async def test_generator_scope_still_governs_its_cleanup_after_the_drop(capacity):
    # Found on trio (older than the batching): the pump left its step scope before it
    # closed the iterator, while the generator, suspended at a yield, still held a scope of
    # its own inside it: trio called the scope stack corrupted and abandoned the generator's
    # scope, so its cleanup ran uncancelled. The pump now closes the iterator inside its scope.
    cancelled = anyio.get_cancelled_exc_class()

    def numbers(log):
        async def gen():
            with anyio.CancelScope() as inner:
                try:
                    for i in range(100):
                        yield i
                finally:
                    inner.cancel()
                    try:
                        await anyio.lowlevel.checkpoint()
                        log.append("cleanup not cancelled")
                    except cancelled:
                        log.append("cleanup cancelled by its own scope")
                        raise
            log.append("closed")

        return gen()

    plain_log = []
    await stopped_at_the_first_item(numbers(plain_log))
    assert plain_log == ["cleanup cancelled by its own scope", "closed"]

    log = []
    keep = numbers(log)
    if capacity == 1:
        assert await m.take_async_iter(keep, 1) == [0]
    else:
        with pytest.raises(Stop):
            await m.collect_async_iter(keep, capacity, on_item=_raise_stop)
    await until(lambda: pumps() == 0 and queued_jobs() == 0, "the pump to end")
    assert log == ["cleanup cancelled by its own scope", "closed"]


async def stopped_at_the_first_item(iterator):
    """What a plain `async for` that stops at the first item, then closes, does."""
    async for _ in iterator:
        break
    await iterator.aclose()


def _raise_stop(item):
    raise Stop


# ---- the pump task cancelled from outside (not by the consumer) ----


@pytest.mark.parametrize("capacity", [2, 8])
async def test_outside_cancellation_mid_batch_delivers_pending_items_then_the_error(
    loop_name, capacity
):
    if loop_name == "trio":
        pytest.skip("asyncio: the pump is a task anyone may cancel")
    import asyncio

    async def numbers():
        yield 0
        yield 1  # pending: no suspension since the first item
        asyncio.current_task().cancel()
        await asyncio.sleep(0)
        yield 2

    items = []
    with pytest.raises(asyncio.CancelledError):
        await m.collect_async_iter(numbers(), capacity, on_item=items.append)
    assert items == [0, 1]
    await until(lambda: pumps() == 0, "the pump to end")


async def test_outside_cancellation_while_waiting_for_room_still_closes_the_iterator(loop_name):
    # Found (older than the batching): the pump cancelled from elsewhere while it waited for
    # room took the cancellation for the iterator's own end and never closed the iterator.
    if loop_name == "trio":
        pytest.skip("asyncio: the pump is a task anyone may cancel")
    import asyncio

    hold = threading.Event()
    closed = anyio.Event()
    log = []
    tasks = []

    def on_item(item):
        if item == 0:
            assert hold.wait(BOUND)
        else:
            raise Stop

    async def numbers():
        tasks.append(asyncio.current_task())
        try:
            for i in range(10):
                log.append(i)
                yield i
        finally:
            closed.set()

    keep = numbers()  # held: only aclose() can close it, not the collector
    try:
        async with anyio.create_task_group() as group:
            outcome = []

            async def consume():
                try:
                    await m.collect_async_iter(keep, 1, on_item=on_item)
                except BaseException as exc:
                    outcome.append(exc)

            group.start_soon(consume)
            # Item 0 is with the consumer (held), item 1 fills the buffer: the pump waits
            # for room, its generator suspended at `yield 1`.
            await until(
                lambda: log == [0, 1]
                and tasks[0].get_coro().cr_frame is not None
                and tasks[0].get_coro().cr_frame.f_locals.get("room") == 0,
                "the pump to wait for room",
            )
            tasks[0].cancel()
            await until(lambda: tasks[0].done(), "the pump task to end")
            hold.set()
        assert outcome and isinstance(outcome[0], (Stop, asyncio.CancelledError))
        # The ended task keeps its cancellation (3.10: with the pump's frame) while held.
        tasks.clear()
        await until(lambda: pumps() == 0 and queued_jobs() == 0, "the pump to be gone")
        # The pump closes the iterator before it ends.
        assert closed.is_set(), "the iterator was never closed: no aclose() after the pump ended"
    finally:
        hold.set()


# ---- the drop racing the iterator's end ----


@pytest.mark.parametrize("capacity", [1, 2, 8])
async def test_iterator_ending_in_answer_to_the_drop_is_not_closed_again(capacity):
    drop = DropInNextStep()
    calls = []
    done = anyio.Event()
    cancelled = anyio.get_cancelled_exc_class()


    class Iterator(FirstItemThenDrop):
        async def after_drop(self):
            try:
                await anyio.sleep_forever()
            except cancelled:
                calls.append("cancelled")
                done.set()
                raise StopAsyncIteration from None

        async def aclose(self):
            calls.append("aclose")
            await anyio.lowlevel.checkpoint()

    with pytest.raises(Stop):
        await m.collect_async_iter(Iterator(drop), capacity, on_item=drop.on_item)
    with anyio.fail_after(BOUND):
        await done.wait()
    await until(lambda: pumps() == 0 and queued_jobs() == 0, "the pump to end")
    assert calls in (["cancelled"], ["cancelled", "aclose"])


# ---- a generator answering the cancellation again and again ----


@pytest.mark.parametrize("capacity", [1, 2, 8])
async def test_generator_answering_each_cancel_with_an_item_is_closed(loop_name, capacity):
    drop = DropInNextStep()
    closed = anyio.Event()
    log = []
    cancelled = anyio.get_cancelled_exc_class()


    async def numbers():
        try:
            yield 0
            await drop.let_the_consumer_drop()
            for i in range(1, 50):
                try:
                    await anyio.sleep_forever()
                except cancelled:
                    log.append(f"cancelled {i}")
                yield i
        except GeneratorExit:
            log.append("exit")
            raise
        finally:
            closed.set()

    keep = numbers()
    with pytest.raises(Stop):
        await m.collect_async_iter(keep, capacity, on_item=drop.on_item)
    with anyio.fail_after(BOUND):
        await closed.wait()
    assert log == ["cancelled 1", "exit"]


# ---- the task's cancellation count after a consumer-driven cancellation (asyncio 3.11+) ----


async def test_aclose_sees_no_cancellation_pending_after_the_drop_cancelled_a_step(loop_name):
    # Found as a gap by round 17: the pump swallowed the cancellation that the drop sent its
    # step, and left `task.cancelling()` at 1 while aclose() ran (its `asyncio.timeout` or
    # task groups would take a cancellation of their own for an outer one).
    if loop_name == "trio" or not hasattr(asyncio_task_type(), "uncancel"):
        pytest.skip("asyncio 3.11+: a task counts its cancellations")
    import asyncio

    drop = DropInNextStep()
    seen = []
    done = anyio.Event()

    class Iterator(FirstItemThenDrop):
        async def after_drop(self):
            await anyio.sleep_forever()  # cancelled by the drop; the error goes to the pump

        async def aclose(self):
            seen.append(asyncio.current_task().cancelling())
            done.set()

    with pytest.raises(Stop):
        await m.collect_async_iter(Iterator(drop), 8, on_item=drop.on_item)
    with anyio.fail_after(BOUND):
        await done.wait()
    assert seen == [0]


def asyncio_task_type():
    import asyncio

    return asyncio.Task

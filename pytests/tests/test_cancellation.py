"""Cancelling the Python side drops (or notifies) the Rust future: asyncio, trio, anyio."""

import asyncio
import sys

import anyio
import pytest
import trio

import pyo3_async_pytests as m
from helpers import until

pytestmark = pytest.mark.anyio


def native_message(message):
    """What awaiting a task cancelled with `message` shows, as for a native coroutine: 3.10's
    tasks drop the message (a pure-Python `async def` loses it the same way)."""
    return message if sys.version_info >= (3, 11) else None


async def test_asyncio_task_cancel_drops_future_and_keeps_message(loop_name):
    if loop_name == "trio":
        pytest.skip("asyncio API")
    probe = m.Probe()
    task = asyncio.create_task(m.pending_forever(probe))
    await until(lambda: probe.polled)
    assert not probe.dropped
    task.cancel("stop it")
    with pytest.raises(asyncio.CancelledError, match=native_message("stop it")):
        await task
    assert probe.dropped


async def test_thrown_exception_is_reraised_itself(loop_name):
    if loop_name == "trio":
        pytest.skip("drives the asyncio protocol by hand")
    probe = m.Probe()
    awaiting = m.pending_forever(probe).__await__()
    future = awaiting.send(None)
    assert asyncio.isfuture(future) and future._asyncio_future_blocking
    cancelled = asyncio.CancelledError("by hand")
    with pytest.raises(asyncio.CancelledError) as raised:
        awaiting.throw(cancelled)
    assert raised.value is cancelled
    assert probe.dropped
    # The 3-argument form of older callers.
    awaiting = m.pending_forever(m.Probe()).__await__()
    awaiting.send(None)
    with pytest.raises(KeyError, match="legacy"):
        awaiting.throw(KeyError, KeyError("legacy"), None)


async def test_trio_cancel_scope_drops_future(loop_name):
    if loop_name != "trio":
        pytest.skip("trio API")
    probe = m.Probe()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            await until(lambda: True)

            async def cancel_when_parked():
                await until(lambda: probe.polled)
                scope.cancel()

            nursery.start_soon(cancel_when_parked)
            await m.pending_forever(probe)
    assert scope.cancelled_caught
    assert probe.dropped


async def test_trio_scope_cancelled_before_first_suspension(loop_name):
    if loop_name != "trio":
        pytest.skip("trio API")
    probe = m.Probe()
    with trio.CancelScope() as scope:
        scope.cancel()
        await m.pending_forever(probe)
    assert scope.cancelled_caught
    assert probe.polled == 1 and probe.dropped


async def test_anyio_move_on_after():
    probe = m.Probe()
    with anyio.move_on_after(0.01) as scope:
        await m.pending_forever(probe)
    assert scope.cancelled_caught
    assert probe.dropped


async def test_anyio_fail_after():
    probe = m.Probe()
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.01):
            await m.pending_forever(probe)
    assert probe.dropped


async def test_anyio_cancel_scope_cancelled_from_another_task():
    probe = m.Probe()
    async with anyio.create_task_group() as group:
        scope = anyio.CancelScope()

        async def wait():
            with scope:
                await m.pending_forever(probe)

        group.start_soon(wait)
        await until(lambda: probe.polled)
        scope.cancel()
    assert scope.cancelled_caught
    assert probe.dropped


async def test_anyio_task_group_cancel_drops_every_future():
    probes = [m.Probe() for _ in range(50)]
    async with anyio.create_task_group() as group:
        for probe in probes:
            group.start_soon(m.pending_forever, probe)
        await until(lambda: all(probe.polled for probe in probes))
        group.cancel_scope.cancel()
    assert all(probe.dropped for probe in probes)


async def test_cleanup_hook_runs_before_cancellation_propagates():
    probe = m.Probe()
    async with anyio.create_task_group() as group:
        scope = anyio.CancelScope()

        async def wait():
            with scope:
                await m.cleanup_on_cancel(probe)

        group.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
    # The scope recognised the exception the future returned as its own cancellation.
    assert scope.cancelled_caught
    assert probe.cleaned_up and probe.dropped


async def test_cleanup_hook_with_move_on_after():
    probe = m.Probe()
    with anyio.move_on_after(0.01) as scope:
        await m.cleanup_on_cancel(probe)
    assert scope.cancelled_caught
    assert probe.cleaned_up


async def test_cleanup_hook_may_return_a_value():
    probe = m.Probe()
    results = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        results.append(await m.cleanup_on_cancel(probe, "finished anyway"))
        await anyio.lowlevel.checkpoint()
    assert results == ["finished anyway"]
    assert scope.cancelled_caught and probe.cleaned_up


async def test_cleanup_hook_with_asyncio_cancel(loop_name):
    if loop_name == "trio":
        pytest.skip("asyncio API")
    probe = m.Probe()
    task = asyncio.create_task(m.cleanup_on_cancel(probe))
    await asyncio.sleep(0)
    task.cancel("cleanup first")
    with pytest.raises(asyncio.CancelledError, match=native_message("cleanup first")):
        await task
    assert probe.cleaned_up


@pytest.mark.parametrize("order", ["wake-then-cancel", "cancel-then-wake", "thread-wake-then-cancel"])
async def test_cancel_racing_completion(order):
    """Completion and cancellation in the same loop pass: either outcome, never an error,
    a hang, or (trio) a second reschedule."""
    outcomes = {"completed": 0, "cancelled": 0}
    for _ in range(100):
        trigger = m.Trigger()
        scope = anyio.CancelScope()
        async with anyio.create_task_group() as group:

            async def wait():
                with scope:
                    await trigger.wait()
                    outcomes["completed"] += 1
                    return
                outcomes["cancelled"] += 1

            group.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            if order == "wake-then-cancel":
                trigger.fire()
                scope.cancel()
            elif order == "cancel-then-wake":
                scope.cancel()
                trigger.fire()
            else:
                trigger.fire_from_thread()
                scope.cancel()
    assert outcomes["completed"] + outcomes["cancelled"] == 100


async def test_future_that_keeps_waking_itself_can_be_cancelled():
    """Woken during every poll, it suspends through a checkpoint each time: the checkpoint
    must still let cancellation in (trio: `checkpoint`, not a shielded one; asyncio: a bare
    yield, not a done future, which anyio would wait for)."""
    with anyio.move_on_after(0.02) as scope:
        await m.yield_now(10**12)
    assert scope.cancelled_caught
    async with anyio.create_task_group() as group:
        group.start_soon(m.yield_now, 10**12)
        await anyio.lowlevel.checkpoint()
        group.cancel_scope.cancel()


async def test_asyncio_task_cancel_reaches_a_self_waking_future(loop_name):
    if loop_name == "trio":
        pytest.skip("asyncio API")
    task = asyncio.create_task(m.yield_now(10**12))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

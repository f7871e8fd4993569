"""Coroutines driven by hand inside a loop's task: `send(None)` parks the coroutine for the task
that sent it, and the trap it returns is dropped instead of reaching the loop. Its wake-up must
then resume nothing: on trio, rescheduling a task that waits for something else resumes that
wait early and corrupts the run (`TrioInternalError` when the real wake-up follows). On
asyncio the wake-up resolves a future nobody awaits.

Found by CI (3.13.0 and 3.15): an attack test dropped such a coroutine from another thread while
a foreign thread woke it, and the wake-up queued for the loop rescheduled the test runner's
task.

Each scenario runs on a fresh loop in a fresh interpreter: a trio run corrupted that way hangs
its runner (anyio's test runner waits for ever), which must fail the scenario, not the suite.
"""

import threading
import weakref

import anyio
import anyio.lowlevel
import pytest
import sniffio

from helpers import run_isolated

try:
    import pyo3_async_pytests as m
except ImportError:  # collected by pytest only in the suite's own environment
    m = None


def wake_on_loop_thread(stash):
    stash.wake()


def wake_from_a_thread(stash):
    stash.wake_from_threads(times=1, threads=1)


def wake_storm(stash):
    stash.wake_from_threads(times=200, threads=4)


WAKES = {wake.__name__: wake for wake in (wake_on_loop_thread, wake_from_a_thread, wake_storm)}


async def sent_by_hand_then_woken(wake):
    """This task waits on an event; another wakes the hand-driven coroutine, passes a few
    checkpoints (a queued wake-up is delivered meanwhile), then sets the event. The wait must
    end by the event alone, and the run go on undisturbed."""
    stash = m.WakerStash()
    coroutine = stash.wait(1)
    coroutine.send(None)  # parks for this task; the trap goes nowhere
    event, order = anyio.Event(), []
    async with anyio.create_task_group() as group:

        async def other():
            WAKES[wake](stash)
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
            order.append("set")
            event.set()

        group.start_soon(other)
        await event.wait()
        order.append("resumed")
    assert order == ["set", "resumed"], "resumed by a wake-up for a trap it never yielded"
    coroutine.close()
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


async def sent_by_hand_then_dropped_on_another_thread(wake):
    """The coroutine goes (on a Python thread other than the loop's) while its wake-up waits
    in the loop's queue: delivered later, it must resume nobody."""
    stash, probe = m.WakerStash(), m.Probe()
    holder = [stash.wait(1, probe)]
    holder[0].send(None)
    WAKES[wake](stash)
    thread = threading.Thread(target=holder.clear)
    thread.start()
    thread.join()
    assert probe.dropped
    event, order = anyio.Event(), []
    async with anyio.create_task_group() as group:

        async def other():
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
            order.append("set")
            event.set()

        group.start_soon(other)
        await event.wait()
        order.append("resumed")
    assert order == ["set", "resumed"]


async def sent_by_hand_in_a_task_that_ended(wake):
    """Sent by hand in a child task that then ends: the wake-up names a finished task, whose
    reschedule would crash trio."""
    stash = m.WakerStash()
    coroutines = []
    async with anyio.create_task_group() as group:

        async def child():
            coroutine = stash.wait(1)
            coroutine.send(None)
            coroutines.append(coroutine)

        group.start_soon(child)
    ref = weakref.ref(coroutines[0])
    WAKES[wake](stash)
    for _ in range(10):
        await anyio.lowlevel.checkpoint()
    coroutines.pop().close()
    assert ref() is None


@pytest.mark.parametrize("wake", list(WAKES))
@pytest.mark.parametrize(
    "scenario",
    [sent_by_hand_then_woken, sent_by_hand_then_dropped_on_another_thread, sent_by_hand_in_a_task_that_ended],
    ids=lambda scenario: scenario.__name__,
)
def test_the_wake_up_of_a_coroutine_sent_by_hand_resumes_no_task(anyio_backend, loop_name, scenario, wake):
    assert run_isolated(scenario, wake, anyio_backend=anyio_backend) == "done\n"


async def a_second_send_by_hand(wake):
    """On trio the coroutine waits in trio's trap: only trio resumes it, with an outcome."""
    stash = m.WakerStash()
    coroutine = stash.wait(1)
    coroutine.send(None)
    if sniffio.current_async_library() == "trio":
        try:
            coroutine.send(None)
        except RuntimeError as raised:
            assert "resumed by hand" in str(raised)
        else:
            raise AssertionError("a second send(None) resumed a coroutine parked in trio's trap")
    coroutine.close()


def test_a_second_send_by_hand_on_trio_gets_a_clear_error(anyio_backend, loop_name):
    assert run_isolated(a_second_send_by_hand, "wake_on_loop_thread", anyio_backend=anyio_backend) == "done\n"

"""A coroutine's waker state, driver and future share one allocation, which every waker of the
future references (src/rust_to_py/driver/shared.rs). A waker kept outside the future (a timer,
a channel, another thread) may therefore outlive the coroutine object: the future must still
go with the coroutine, at once, and a late wake must do nothing.
"""

import gc
import sys
import warnings

import anyio
import anyio.lowlevel
import pytest

import pyo3_async_pytests as m
from helpers import ABI3

pytestmark = pytest.mark.anyio


def suspend_by_hand(coroutine):
    """Advances `coroutine` to its first suspension, as its task's first step would, and
    returns what it yielded to the loop (asyncio's future, trio's trap)."""
    return coroutine.send(None)


async def test_the_future_goes_with_its_coroutine_while_a_waker_lives_on():
    stash, probe = m.WakerStash(), m.Probe()
    coroutine = stash.wait(1, probe)
    suspend_by_hand(coroutine)
    assert stash.has_waker and not probe.dropped
    del coroutine
    assert probe.dropped, "the future went with its coroutine, not with the last waker"
    # Late wakes, here and from other threads, find a finished coroutine.
    stash.wake()
    stash.wake_from_threads(100, 4)
    assert stash.has_waker


async def test_a_waker_kept_past_a_task_cancelled_while_parked_is_inert():
    stash, probe = m.WakerStash(), m.Probe()
    async with anyio.create_task_group() as group:

        async def wait():
            await stash.wait(1, probe)

        group.start_soon(wait)
        while not stash.has_waker:
            await anyio.lowlevel.checkpoint()
        group.cancel_scope.cancel()
    assert probe.dropped
    stash.wake()
    stash.wake_from_threads(10, 2)
    await anyio.lowlevel.checkpoint()


async def test_a_dropped_coroutine_leaves_no_warning_when_a_waker_outlives_it():
    stash = m.WakerStash()
    coroutine = stash.wait(1)
    suspend_by_hand(coroutine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del coroutine
        gc.collect()


async def test_trio_abort_after_the_coroutine_is_gone_releases_the_task(loop_name):
    """trio's abort function holds the coroutine weakly: called after the coroutine is gone,
    it answers SUCCEEDED, since nothing can wake the task any more."""
    if loop_name != "trio":
        pytest.skip("trio's abort function")
    import trio

    stash = m.WakerStash()
    coroutine = stash.wait(1)
    trap = suspend_by_hand(coroutine)
    abort = trap.abort_func
    del coroutine, trap
    assert abort(lambda: None) is trio.lowlevel.Abort.SUCCEEDED


@pytest.mark.skipif(
    sys.implementation.name != "cpython" or getattr(sys, "_is_gil_enabled", lambda: True)() is False,
    reason="CPython's object layout with the GIL",
)
def test_a_coroutine_object_takes_the_64_byte_class():
    """Its fields are the shared allocation's reference and one word for its label and its two
    flags: a GC header, an object header, 24 bytes and the weak-reference list."""
    coroutine = m.WakerStash().wait(1)
    try:
        assert sys.getsizeof(coroutine) == 64, ABI3
    finally:
        coroutine.close()

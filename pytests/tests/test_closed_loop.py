"""Wake-ups after the event loop closed or the trio run ended are ignored, silently."""

import asyncio
import gc
import os
import warnings
import weakref

import pytest
import trio
import uvloop

import pyo3_async_pytests as m

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.mark.parametrize("wake", ["from-threads", "on-loop-thread"])
@pytest.mark.parametrize("new_loop", LOOPS.values(), ids=LOOPS.keys())
def test_wake_after_asyncio_loop_closed(new_loop, wake, capfd):
    loop = new_loop()
    stash = m.WakerStash()
    task = loop.create_task(stash.wait(1))
    while not stash.has_waker:
        loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    if wake == "from-threads":
        stash.wake_from_threads(times=3, threads=2)
    else:
        stash.wake()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert not task.done()
    # The task can never finish now; asyncio would log it when collected.
    task._log_destroy_pending = False


def test_wake_after_trio_run_ended(capfd):
    stash = m.WakerStash()

    async def main():
        with trio.move_on_after(0.01):
            await stash.wait(1)

    trio.run(main)
    assert stash.has_waker
    stash.wake_from_threads(times=3, threads=2)
    stash.wake()
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("new_loop", LOOPS.values(), ids=LOOPS.keys())
def test_wake_after_completion_is_ignored(new_loop, capfd):
    stash = m.WakerStash()
    loop = new_loop()
    loop.run_until_complete(asyncio.wait_for(stash_wait_then_wake(stash), 10))
    stash.wake_from_threads(times=3, threads=2)
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    assert capfd.readouterr() == ("", "")


async def stash_wait_then_wake(stash):
    loop = asyncio.get_running_loop()
    loop.call_soon(stash.wake)
    await stash.wait(1)


def test_an_asyncio_loop_dropped_without_close_is_collected():
    # The loop holds its wake-up watcher and the watcher's home holds the loop: a cycle
    # through Rust that the collector must see, as it sees a pure-Python loop's. (uvloop's
    # loop is never collected once it has a reader, even with a pure-Python callback: its
    # reader handles are invisible to the collector; nothing of ours can change that.)
    new_loop = asyncio.new_event_loop

    def open_descriptors():
        return len(os.listdir("/proc/self/fd"))

    def use_and_drop():
        loop = new_loop()
        trigger = m.Trigger()

        async def main():
            waiting = asyncio.ensure_future(trigger.wait("woken"))
            await asyncio.sleep(0)
            trigger.fire_from_thread()  # through the home: its signal is watched
            return await waiting

        assert loop.run_until_complete(main()) == "woken"
        return weakref.ref(loop)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # "unclosed event loop", as intended
        use_and_drop()
        gc.collect()
        before = open_descriptors()
        dropped = [use_and_drop() for _ in range(100)]
        gc.collect()
    assert [loop for loop in dropped if loop() is not None] == []
    assert open_descriptors() <= before

"""Wake-ups after the event loop closed or the trio run ended are ignored, silently."""

import asyncio

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

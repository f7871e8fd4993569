"""`AllowThreads` polls with the interpreter released: other Python threads run meanwhile."""

import threading

import pytest

import pyo3_async_pytests as m

pytestmark = pytest.mark.anyio


def helper(latch):
    def run():
        latch.wait_blocked()  # returns to Python only once it gets the interpreter
        latch.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


async def test_poll_with_interpreter_released_lets_python_threads_run():
    latch = m.Latch()
    thread = helper(latch)
    assert await m.block_on_latch(latch, timeout=30, allow_threads=True)
    thread.join()


async def test_poll_holding_the_interpreter_blocks_python_threads():
    # The control experiment: the same poll without AllowThreads keeps the thread out.
    latch = m.Latch()
    thread = helper(latch)
    assert not await m.block_on_latch(latch, timeout=0.2, allow_threads=False)
    thread.join()

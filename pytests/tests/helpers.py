import time

import anyio
import anyio.lowlevel


async def until(condition, passes=10_000):
    """Yields to the event loop (no timer) until `condition()` holds."""
    for _ in range(passes):
        if condition():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("condition never held")


async def until_threads(condition, seconds=120):
    """`until`, for a condition that other threads make true: keeps yielding to the loop for
    as long as they may take (slow machines, valgrind), not a fixed number of passes."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {seconds} s")
        await anyio.lowlevel.checkpoint()

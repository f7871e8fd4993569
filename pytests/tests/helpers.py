import anyio
import anyio.lowlevel


async def until(condition, passes=10_000):
    """Yields to the event loop (no timer) until `condition()` holds."""
    for _ in range(passes):
        if condition():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("condition never held")

"""Python code the Rust integration tests await (on every loop: written with anyio)."""

import asyncio
import contextvars
import threading

import anyio

VAR = contextvars.ContextVar("VAR", default="unset")


async def add(a, b):
    await anyio.sleep(0)
    return a + b


async def fail(exception):
    await anyio.sleep(0)
    raise exception


async def wait_forever(started, cancelled):
    started.set()
    try:
        await anyio.sleep_forever()
    except BaseException:
        cancelled.set()
        raise


async def read_var():
    await anyio.sleep(0)
    return VAR.get()


async def numbers(n, closed=None):
    try:
        for i in range(n):
            if i % 7 == 0:
                await anyio.sleep(0)
            yield i
    finally:
        if closed is not None:
            closed.set()


async def failing_numbers():
    yield 1
    await anyio.sleep(0)
    raise KeyError("from the generator")


class Counter:
    produced = 0


async def counting(counter):
    while True:
        counter.produced += 1
        await anyio.sleep(0)
        yield counter.produced


async def noop():
    await anyio.sleep(0)


def complete_from_thread(future, value):
    threading.Thread(target=future.set_result, args=(value,)).start()


async def new_future():
    """A future of the running asyncio loop."""
    return asyncio.get_running_loop().create_future()


async def drain(generator):
    return [item async for item in generator]


_unraisable = []


def record_unraisable():
    """Records unraisable errors from here on that concern a `LoopThread` (tests run in
    parallel threads: only those count), still printing every one."""
    import sys

    if getattr(sys.unraisablehook, "recording", False):
        return
    default = sys.unraisablehook

    def hook(unraisable):
        if "LoopThread" in repr(unraisable.exc_value) or "itself" in repr(unraisable.exc_value):
            _unraisable.append(repr(unraisable.exc_value))
        default(unraisable)

    hook.recording = True
    sys.unraisablehook = hook


def recorded_unraisable():
    return list(_unraisable)

"""Event loops running in a thread of their own, for Rust tests to drive from executors."""

import asyncio
import contextvars
import gc
import threading

import anyio
import trio
import uvloop

VAR = contextvars.ContextVar("VAR", default="unset")


class LoopThread:
    def __init__(self, kind):
        self.kind = kind
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"{kind}-loop", daemon=True)
        self.thread.start()
        self.ready.wait()

    def run(self):
        if self.kind == "trio":
            trio.run(self.trio_main)
            return
        new_loop = uvloop.new_event_loop if self.kind == "uvloop" else asyncio.new_event_loop
        self.loop = self.handle = new_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self.ready.set)
        self.loop.run_forever()
        # Closed with tasks still pending: collecting them drops their done-callbacks.
        self.loop.close()
        asyncio.set_event_loop(None)
        gc.collect()

    async def trio_main(self):
        self.handle = trio.lowlevel.current_trio_token()
        self.stopping = trio.Event()
        self.ready.set()
        await self.stopping.wait()

    def call(self, function, *args):
        """Runs `function(*args)` on the loop thread and returns its result."""
        if self.kind == "trio":
            return trio.from_thread.run_sync(function, *args, trio_token=self.handle)
        done = threading.Event()
        box = []

        def run():
            box.append(function(*args))
            done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait()
        return box[0]

    def stop(self):
        if self.kind == "trio":
            self.handle.run_sync_soon(self.stopping.set)
        else:
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


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

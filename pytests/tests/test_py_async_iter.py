"""Python async iterators consumed from Rust (PyAsyncIter), on a tokio thread."""

import threading

import anyio
import pytest

import pyo3_async_pytests as m

pytestmark = pytest.mark.anyio


class Custom(Exception):
    pass


async def numbers(n, record=None):
    if record is not None:
        record.append(threading.get_ident())
    for i in range(n):
        if i % 3 == 0:
            await anyio.lowlevel.checkpoint()
        yield i


@pytest.mark.parametrize("capacity", [1, 3, 64])
async def test_every_item_in_order(capacity):
    assert await m.collect_async_iter(numbers(500), capacity) == list(range(500))


@pytest.mark.parametrize("capacity", [2, 8, 256])
async def test_a_quarter_of_the_buffer_reaches_the_consumer_while_the_iterator_runs_on(capacity):
    # An iterator that never suspends never lets the loop run the pump's announcement: its
    # items reach the consumer (on another thread) once a quarter of the buffer is filled (a
    # batch), so that the consumer takes them while the iterator goes on, and the pump has
    # three more batches of room while the consumer wakes up.
    received = threading.Event()
    batch = (capacity + 3) // 4

    async def without_suspending():
        for i in range(batch):
            yield i
        # Blocks the loop (a thread wait, no await): only the consumer can end it. The
        # timeout only bounds a failure.
        assert received.wait(timeout=60), "the consumer was not told of a batch"
        yield "after"

    items = await m.collect_async_iter(
        without_suspending(), capacity, on_item=lambda item: received.set()
    )
    assert items == [*range(batch), "after"]


@pytest.mark.parametrize("capacity", [3, 64, 256])
async def test_an_item_reaches_the_consumer_as_soon_as_the_iterator_suspends(capacity):
    # Items cross over in batches; a batch that the iterator suspends in the middle of goes
    # at once (the loop runs the pump's flush), not when it is full or the iterator ends.
    received = threading.Event()

    async def one_then_wait():
        yield "first"
        # The loop runs on while a worker thread waits for the consumer (another thread) to
        # have the first item. The timeout only bounds a failure.
        got = await anyio.to_thread.run_sync(received.wait, 60)
        assert got, "the first item waited for the batch to fill"
        yield "second"

    items = await m.collect_async_iter(
        one_then_wait(), capacity, on_item=lambda item: received.set()
    )
    assert items == ["first", "second"]


async def test_first_iteration_happens_on_the_loop_thread():
    record = []
    assert await m.collect_async_iter(numbers(3, record)) == [0, 1, 2]
    assert record == [threading.get_ident()]


async def test_error_keeps_type_and_ends_stream():
    error = Custom("in the generator")

    async def failing():
        yield 1
        await anyio.lowlevel.checkpoint()
        raise error

    with pytest.raises(Custom) as raised:
        await m.collect_async_iter(failing())
    assert raised.value is error


async def test_any_object_with_aiter():
    class Countdown:
        def __init__(self):
            self.left = 3

        def __aiter__(self):
            return self

        async def __anext__(self):
            if self.left == 0:
                raise StopAsyncIteration
            self.left -= 1
            return self.left

    assert await m.collect_async_iter(Countdown()) == [2, 1, 0]


async def test_not_an_async_iterable_is_a_type_error():
    with pytest.raises(TypeError, match="__aiter__"):
        await m.collect_async_iter([1, 2])


async def test_dropping_the_stream_acloses_the_generator():
    closed = anyio.Event()

    async def endless():
        try:
            i = 0
            while True:
                await anyio.lowlevel.checkpoint()
                yield i
                i += 1
        finally:
            closed.set()

    assert await m.take_async_iter(endless(), 2) == [0, 1]
    with anyio.fail_after(10):
        await closed.wait()


async def test_dropping_the_stream_interrupts_a_pending_anext():
    closed = anyio.Event()
    seen = []

    async def stuck_after_two():
        try:
            yield 0
            yield 1
            await anyio.sleep_forever()
            yield 2
        except BaseException as exc:
            seen.append(type(exc).__name__)
            raise
        finally:
            closed.set()

    assert await m.take_async_iter(stuck_after_two(), 2) == [0, 1]
    with anyio.fail_after(10):
        await closed.wait()
    assert seen in ([], [anyio.get_cancelled_exc_class().__name__], ["GeneratorExit"])

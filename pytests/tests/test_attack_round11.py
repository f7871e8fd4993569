"""Attack round 11, on two changes: `Coroutine`'s own `IntoPyObject` (every coroutine handed to
Python is made in its awaited class under abi3, so plain `#[pyfunction]`s and `aclose`/`asend`/
`athrow` now reach the spare `StopIteration`), and `PyAsyncIter` announcing a batch when the
buffer reaches half its capacity (`div_ceil(2)`) instead of when full.

Tried (all passing; nothing found):
- coroutines: `ready` and `ready_by_pyo3` driven by hand (`send`, `next`, `__await__().send`,
  `next(__await__())`), `anext(agen, default)` and `asend` steps driven by hand: every caught
  `StopIteration` is its own object and keeps its value after many later awaits; `yield from
  c.__await__()` in a generator-based coroutine; `asyncio.ensure_future` / trio and anyio tasks
  given the coroutine (and an `aclose()` coroutine) directly; a coroutine awaited while another
  reference keeps it; reference counts of the result and of both classes across awaits, hand
  steps, `close()`, `__class__` assignment between the base and the awaited class; pickling and
  copying refused; weakrefs; a cycle through the result collected; subclassing refused as before.
- PyAsyncIter: an iterator that never suspends and blocks the loop until the consumer has
  received an item of each half batch, in lockstep for several batches (capacities 1, 2, 3, 5, 8); a
  consumer slower than the pump (it holds its first item until the pump has pulled a buffer's
  worth more); an exception right after a half batch, one before it and one after it; the stream
  dropped mid-batch (the generator is closed); many never-suspending items at odd capacities.
"""

import asyncio
import copy
import gc
import pickle
import sys
import threading
import types
import weakref

import anyio
import pytest

import pyo3_async_pytests as m


# ------------------------------------------------------------------------------------------
# Coroutines: the spare StopIteration, classes, reference counts.


def _awaited_class():
    # Under abi3 the subclass coroutines are made in (await moves a base one there); with
    # the full API, Coroutine itself.
    coroutine = m.ready(None)
    cls = type(coroutine)
    coroutine.close()
    return cls


def _step_by_hand(coroutine, how):
    try:
        if how == "send":
            coroutine.send(None)
        elif how == "next":
            next(coroutine)
        elif how == "await_send":
            coroutine.__await__().send(None)
        else:
            next(coroutine.__await__())
    except StopIteration as exc:
        return exc
    raise AssertionError("the coroutine did not finish at once")


def test_caught_stop_iterations_never_change():
    saved = []
    makers = [
        m.ready,
        m.ready_by_pyo3,
        lambda value: anext(m.count(3), value),  # yields 0: the value is the item
        lambda value: anext(m.count(0), value),  # exhausted: the default
        lambda value: m.count(2).asend(None),
    ]
    for maker in makers:
        for how in ("send", "next", "await_send", "await_next"):
            value = [how]
            exc = _step_by_hand(maker(value), how)
            saved.append((exc, exc.value))

    async def churn():
        for i in range(50):
            await m.ready(i)
            await m.ready_by_pyo3(i)
            await anext(m.count(2), i)
        async for _ in m.count(10):
            pass
        agen = m.count(5)
        await anext(agen, 7)
        await agen.asend(None)
        await agen.aclose()

    asyncio.run(churn())
    for i in range(20):
        _step_by_hand(anext(m.count(1), i), "await_next")
        _step_by_hand(m.ready(i), "next")
    assert [exc.value for exc, _ in saved] == [value for _, value in saved]
    assert all(exc.value is value for exc, value in saved)
    assert len({id(exc) for exc, _ in saved}) == len(saved)


def test_generator_based_yield_from_and_tasks_given_coroutines():
    @types.coroutine
    def delegate(coroutine):
        return (yield from coroutine.__await__())

    async def main():
        a = await delegate(m.ready(5))
        b = await delegate(m.ready_by_pyo3(6))
        c = await delegate(anext(m.count(2), 0))
        t = asyncio.ensure_future(m.ready_by_pyo3(7))
        u = asyncio.ensure_future(m.ready(8))
        agen = m.count(3)
        await anext(agen)
        closing = asyncio.ensure_future(agen.aclose())
        return a, b, c, await t, await u, await closing

    assert asyncio.run(main()) == (5, 6, 0, 7, 8, None)


@pytest.mark.anyio
async def test_ready_by_pyo3_as_a_task_and_awaited_while_kept(loop_name):
    results = []

    async def run(coroutine):
        results.append(await coroutine)

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(run, m.ready_by_pyo3(i))
            tg.start_soon(run, m.ready(i))
    assert sorted(results) == sorted([*range(5), *range(5)])

    kept = m.ready_by_pyo3(["kept"])
    value = await kept
    assert value == ["kept"]
    kept2 = m.ready(["kept2"])
    assert await kept2 == ["kept2"]
    with pytest.raises(RuntimeError):
        await kept
    agen = m.count(3)
    step = agen.asend(None)
    assert await step == 0
    assert await anext(agen, "d") == 1


def test_reference_counts_of_results_and_classes():
    awaited_class = _awaited_class()
    base = m.Coroutine
    value = object()

    async def main():
        for _ in range(200):
            assert await m.ready(value) is value
            assert await m.ready_by_pyo3(value) is value
            kept = m.ready(value)
            assert await kept is value
            del kept
            agen = m.count(2)
            await anext(agen, value)
            await agen.aclose()

    def hand():
        for how in ("send", "next", "await_send", "await_next"):
            _step_by_hand(m.ready(value), how)
            _step_by_hand(m.ready_by_pyo3(value), how)
        m.ready(value).close()
        m.ready_by_pyo3(value).close()
        moved = m.ready(value)
        moved.__class__ = base
        moved.__class__ = awaited_class
        moved.close()

    asyncio.run(main())  # warm up caches
    hand()
    gc.collect()
    before = sys.getrefcount(value), sys.getrefcount(awaited_class), sys.getrefcount(base)
    asyncio.run(main())
    for _ in range(100):
        hand()
    gc.collect()
    after = sys.getrefcount(value), sys.getrefcount(awaited_class), sys.getrefcount(base)
    assert after == before


def test_class_assignment_between_base_and_awaited_class_still_awaits():
    base = m.Coroutine
    awaited_class = _awaited_class()

    async def main():
        c = m.ready(1)
        c.__class__ = base  # under abi3: back into the base class
        first = await c
        d = m.ready_by_pyo3(2)
        d.__class__ = awaited_class
        second = await d
        return first, second

    assert asyncio.run(main()) == (1, 2)


def test_pickle_copy_weakref_cycles():
    for maker in (m.ready, m.ready_by_pyo3, lambda _: m.count(1).aclose()):
        coroutine = maker(1)
        with pytest.raises(TypeError):
            pickle.dumps(coroutine)
        with pytest.raises(TypeError):
            copy.copy(coroutine)
        ref = weakref.ref(coroutine)
        assert ref() is coroutine
        coroutine.close()
        del coroutine
        assert ref() is None

    for maker in (m.ready, m.ready_by_pyo3):
        holder = []
        coroutine = maker(holder)
        holder.append(coroutine)  # a cycle through the result
        ref = weakref.ref(coroutine)
        coroutine.close()
        del coroutine, holder
        gc.collect()
        assert ref() is None


def test_subclassing_refused_or_uninstantiable():
    for cls in (m.Coroutine, _awaited_class()):
        try:
            sub = type("Sub", (cls,), {})
        except TypeError:
            continue
        with pytest.raises(TypeError):
            sub()


# ------------------------------------------------------------------------------------------
# PyAsyncIter: the half-buffer announcement.


@pytest.mark.anyio
@pytest.mark.parametrize("capacity", [1, 2, 3, 5, 8])
async def test_half_batches_in_lockstep_with_a_blocking_iterator(capacity):
    # The iterator never suspends: after each half batch it blocks the loop until the
    # consumer has received an item of that batch. Only the half-buffer announcement can wake
    # the consumer, batch after batch. Not the whole batch: a consumer awake when a batch
    # starts may take its first items alone and sleep, and what follows them stays below the
    # half mark until the next batch fills the buffer past it (items pushed before a loop
    # blocks are promised at the half mark or at a suspension, no sooner).
    half = (capacity + 1) // 2
    batches = 4
    received = []
    lock = threading.Lock()
    progress = threading.Condition(lock)

    def on_item(item):
        with progress:
            received.append(item)
            progress.notify_all()

    async def blocking():
        n = 0
        for _ in range(batches):
            for _ in range(half):
                yield n
                n += 1
            with progress:
                assert progress.wait_for(lambda: len(received) > n - half, timeout=60), (
                    f"stranded: {len(received)} of {n} received"
                )

    items = await m.collect_async_iter(blocking(), capacity, on_item=on_item)
    assert items == list(range(batches * half))


@pytest.mark.anyio
@pytest.mark.parametrize("capacity", [2, 3, 4, 7])
async def test_consumer_slower_than_the_pump(capacity):
    # The consumer holds its first item until the pump has pulled `capacity` more, then the
    # pump fills the buffer and waits for room; everything must still arrive, in order. (Not
    # `half + capacity`: the consumer's first batch may be a single item, taken before the
    # half mark, and then the pump can never pull that many while the consumer holds it.)
    filled = threading.Event()
    total = 6 * capacity + 1

    async def fast():
        for i in range(total):
            if i == capacity:
                filled.set()
            yield i

    first = []

    def on_item(item):
        if not first:
            first.append(item)
            assert filled.wait(timeout=60)

    assert await m.collect_async_iter(fast(), capacity, on_item=on_item) == list(range(total))


class Boom(Exception):
    pass


@pytest.mark.anyio
@pytest.mark.parametrize("capacity", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("offset", [-1, 0, 1])
async def test_exception_around_a_half_batch(capacity, offset):
    half = (capacity + 1) // 2
    count = max(half + offset, 0)
    seen = []

    async def failing():
        for i in range(count):
            yield i
        raise Boom(count)

    with pytest.raises(Boom):
        await m.collect_async_iter(failing(), capacity, on_item=seen.append)
    assert seen == list(range(count))


@pytest.mark.anyio
@pytest.mark.parametrize("n", [1, 2, 3])
async def test_dropping_the_stream_mid_batch_closes_the_generator(n):
    closed = anyio.Event()

    async def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    assert await m.take_async_iter(endless(), n) == list(range(n))
    with anyio.fail_after(30):
        await closed.wait()


@pytest.mark.anyio
@pytest.mark.parametrize("capacity", [1, 2, 3, 5, 7, 9, 63])
async def test_many_never_suspending_items_at_odd_capacities(capacity):
    async def never_suspending():
        for i in range(2000):
            yield i

    assert await m.collect_async_iter(never_suspending(), capacity) == list(range(2000))

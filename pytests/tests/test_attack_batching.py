"""Attacks on the batched hand-over of PyAsyncIter (the pump's `pending` list, `flush`,
`flush_soon`, `finish`), on every loop. Consumers run on tokio (`collect_async_iter`) or on
the loop (`take_async_iter`). No sleeps synchronise anything: threading.Event waits and
spins have bounding timeouts that only bound a failure."""

import gc
import random
import sys
import threading
import time
import weakref

import anyio
import pytest

import pyo3_async_pytests as m

pytestmark = pytest.mark.anyio

BOUND = 30  # seconds: only bounds a failure


class Boom(Exception):
    pass


class Stop(Exception):
    """Raised by `on_item`: the tokio consumer drops its stream mid-stream."""


class DropInNextStep:
    """A consumer (`on_item`, on the tokio thread) that drops its stream at the first item,
    while the iterator's next step runs: that step awaits `let_the_consumer_drop()`, which
    frees the loop until the consumer has the item, then lets the consumer drop. The drop
    happens during the step, deterministically."""

    def __init__(self):
        self.got_first, self.resumed = threading.Event(), threading.Event()

    def on_item(self, item):
        self.got_first.set()
        assert self.resumed.wait(BOUND)
        raise Stop

    async def let_the_consumer_drop(self):
        await anyio.to_thread.run_sync(self.got_first.wait, BOUND)
        self.resumed.set()


class FirstItemThenDrop:
    """An async iterator (class-based: its `aclose` is the test's) whose first step returns
    0 and whose second lets the consumer drop the stream (`DropInNextStep`), then goes on
    with `after_drop()`, which a scenario writes."""

    def __init__(self, drop):
        self.drop = drop
        self.n = 0

    def __aiter__(self):
        return self

    async def __anext__(self):
        self.n += 1
        if self.n == 1:
            return 0
        await self.drop.let_the_consumer_drop()
        return await self.after_drop()


class Item:
    __slots__ = ("value", "__weakref__")

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"Item({self.value})"


def spin_until(predicate, what):
    """Blocks this thread (the loop's, where called from a step) until `predicate()`."""
    deadline = time.monotonic() + BOUND
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0)


def pump_channel():
    """From inside a step of the iterator: the running pump's channel (its `Pump`)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "pump_async_iter":
            return frame.f_locals["channel"]
        frame = frame.f_back
    raise AssertionError("not called from a pump's step")


def queued_jobs():
    return m.pyo3_async_stats()["queued_jobs"]


def pumps():
    return m.pyo3_async_stats()["async_iter_pumps"]


async def until(predicate, what):
    with anyio.fail_after(BOUND):
        while not predicate():
            m.pyo3_async_stats()  # PyO3's deferred decrefs
            gc.collect()
            await anyio.lowlevel.checkpoint()
            await anyio.to_thread.run_sync(time.sleep, 0)


async def plain(iterable):
    """What a plain `async for` sees: the items, then the exception, if any."""
    items = []
    try:
        async for item in iterable:
            items.append(item)
    except Exception as exc:
        return items, exc
    return items, None


async def through_rust(iterable, capacity, on_item=None):
    items = []

    def record(item):
        items.append(item)
        if on_item is not None:
            on_item(item)

    try:
        result = await m.collect_async_iter(iterable, capacity, on_item=record)
    except Exception as exc:
        return items, exc
    assert result == items
    return items, None


# ---- the consumer gone mid-batch ----


async def test_no_step_starts_after_the_consumer_is_gone():
    # Found against the first batched pump: with room left in its grant, it started the next
    # step without asking whether the consumer was still there. Every item that follows a
    # suspension comes first in its batch, and `flush_soon` answers that question.
    drop = DropInNextStep()
    closed = anyio.Event()
    log = []


    async def numbers():
        try:
            log.append("step 1")
            yield 0
            log.append("step 2")
            await drop.let_the_consumer_drop()
            channel = pump_channel()
            # The consumer drops its stream now (loop blocked: the cancel job waits).
            spin_until(channel.closed, "the consumer to drop the stream")
            yield 1  # the step under way at the drop ends with an item
            log.append("step 3")  # a step started after the consumer was gone
            await anyio.sleep_forever()
        finally:
            closed.set()

    with pytest.raises(Stop):
        await m.collect_async_iter(numbers(), 8, on_item=drop.on_item)
    with anyio.fail_after(BOUND):
        await closed.wait()
    # A plain `async for` that stops after item 0 never starts step 3.
    assert log == ["step 1", "step 2"]


async def test_an_answered_cancel_does_not_leave_the_pump_in_a_new_step():
    # Found against the first batched pump (asyncio, uvloop): a step answering its
    # cancellation with an item led to a next step that nothing cancelled, for ever. The
    # drop's job now also marks the consumer gone (`gone`), which the pump tests before
    # each step.
    closed = anyio.Event()
    release = anyio.Event()
    log = []
    cancelled = anyio.get_cancelled_exc_class()

    def on_item(item):
        raise Stop

    async def numbers():
        try:
            yield 0
            try:
                await anyio.sleep_forever()  # the step under way at the drop
            except cancelled:
                log.append("step 2 cancelled")
            yield 1  # the iterator's answer to the cancellation
            log.append("step 3")
            try:
                await release.wait()
            except cancelled:
                log.append("step 3 cancelled")
                raise
        finally:
            closed.set()

    try:
        with pytest.raises(Stop):
            await m.collect_async_iter(numbers(), 8, on_item=on_item)
        with anyio.fail_after(BOUND):
            while not (closed.is_set() or "step 3" in log):
                await anyio.lowlevel.checkpoint()
            while queued_jobs():
                await anyio.lowlevel.checkpoint()
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        assert closed.is_set(), f"the generator was left open in a step: {log}"
    finally:
        release.set()
        with anyio.fail_after(BOUND):
            await closed.wait()


async def test_a_step_failing_at_the_drop_leaves_aclose_uncancelled():
    # Found (asyncio, uvloop; older than the batching): a step failing on its own while the
    # drop's cancellation was queued left `pulling` set, and the cancellation then landed in
    # aclose(). The pump now says it stopped (`stop`) before aclose().
    drop = DropInNextStep()
    done = anyio.Event()
    log = []

    class Iterator(FirstItemThenDrop):
        async def after_drop(self):
            channel = pump_channel()
            spin_until(channel.closed, "the consumer to drop the stream")
            spin_until(lambda: queued_jobs() > 0, "the drop's cancel job")
            raise Boom("the iterator's own failure, at the drop")

        async def aclose(self):
            log.append("aclose")
            try:
                # Lets the queued jobs run, then a few more loop passes.
                with anyio.fail_after(BOUND):
                    while queued_jobs():
                        await anyio.lowlevel.checkpoint()
                for _ in range(5):
                    await anyio.lowlevel.checkpoint()
            except BaseException as exc:
                log.append(type(exc).__name__)
                raise
            finally:
                done.set()
            log.append("aclose ran to its end")


    with pytest.raises(Stop):
        await m.collect_async_iter(Iterator(drop), 8, on_item=drop.on_item)
    with anyio.fail_after(BOUND):
        await done.wait()
    assert log == ["aclose", "aclose ran to its end"]


@pytest.mark.parametrize("capacity", [3, 8, 64])
async def test_pending_items_of_a_dropped_stream_are_released(capacity):
    # Items pulled after the consumer took its last one, some pending when it drops the
    # stream (the step under way is cancelled): none reaches it, all are released, the
    # generator is closed once, the pump ends.
    drop = DropInNextStep()
    closed = anyio.Event()
    refs = []
    finals = []
    before = pumps()


    async def items():
        try:
            yield Item(0)
            await drop.let_the_consumer_drop()
            for i in (1, 2):
                item = Item(i)
                refs.append(weakref.ref(item))
                yield item
                del item
            channel = pump_channel()
            spin_until(channel.closed, "the consumer to drop the stream")
            await anyio.sleep_forever()
        finally:
            finals.append(1)
            closed.set()

    seen = []
    with pytest.raises(Stop):
        await m.collect_async_iter(items(), capacity, on_item=lambda x: (seen.append(x.value), drop.on_item(x)))
    with anyio.fail_after(BOUND):
        await closed.wait()
    await until(lambda: pumps() <= before, "the pump to end")
    await until(lambda: all(ref() is None for ref in refs), "the pending items' release")
    assert seen == [0]
    assert finals == [1]


@pytest.mark.parametrize("capacity", [1, 2, 3, 8])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
async def test_take_then_drop_closes_once_and_releases_everything(capacity, n):
    # take_async_iter uses capacity 1; collect with a raising on_item uses `capacity`.
    closes = []
    refs = []
    before = pumps()

    async def endless():
        try:
            i = 0
            while True:
                item = Item(i)
                refs.append(weakref.ref(item))
                if i % 2:
                    await anyio.lowlevel.checkpoint()
                yield item
                del item
                i += 1
        finally:
            closes.append(1)

    got = await m.take_async_iter(endless(), n)
    assert [item.value for item in got] == list(range(n))
    del got

    count = []

    def on_item(item):
        count.append(item.value)
        if len(count) == n:
            raise Stop

    with pytest.raises(Stop):
        await m.collect_async_iter(endless(), capacity, on_item=on_item)
    assert count == list(range(n))
    await until(lambda: len(closes) == 2 and pumps() <= before, "both generators closed")
    await until(lambda: all(ref() is None for ref in refs), "every item released")
    assert closes == [1, 1]


async def test_aclose_failing_after_a_mid_batch_drop_is_reported_once(loop_name, monkeypatch):
    reports = []
    calls = []
    done = threading.Event()
    if loop_name == "trio":
        monkeypatch.setattr(sys, "unraisablehook", lambda u: (reports.append(u.exc_value), done.set()))
    else:
        import asyncio

        loop = asyncio.get_running_loop()

        def handler(_loop, context):
            reports.append(context.get("exception"))
            done.set()

        loop.set_exception_handler(handler)

    class Iterator:
        def __init__(self):
            self.n = 0

        def __aiter__(self):
            return self

        async def __anext__(self):
            self.n += 1
            if self.n % 3 == 0:
                await anyio.lowlevel.checkpoint()
            return self.n

        async def aclose(self):
            calls.append(1)
            await anyio.lowlevel.checkpoint()
            raise Boom("aclose")

    def on_item(item):
        if item == 4:
            raise Stop

    try:
        with pytest.raises(Stop):
            await m.collect_async_iter(Iterator(), 8, on_item=on_item)
        assert await anyio.to_thread.run_sync(done.wait, BOUND)
        await until(lambda: pumps() == 0 or len(calls) >= 1, "aclose")
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
    finally:
        if loop_name != "trio":
            loop.set_exception_handler(None)
    assert calls == [1]
    assert len(reports) == 1 and isinstance(reports[0], Boom), reports


# ---- order, ends, odd iterators: compared with a plain `async for` ----


def patterned(n, suspend_at, fail):
    async def gen():
        for i in range(n):
            if i in suspend_at:
                await anyio.lowlevel.checkpoint()
            yield i
        if fail:
            raise Boom(n)

    return gen


@pytest.mark.parametrize("capacity", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("seed", range(6))
async def test_random_suspensions_and_ends_match_async_for(capacity, seed):
    rng = random.Random(seed * 100 + capacity)
    for _ in range(20):
        n = rng.randrange(0, 4 * capacity + 3)
        suspend_at = {i for i in range(n) if rng.random() < 0.3}
        fail = rng.random() < 0.5
        gen = patterned(n, suspend_at, fail)
        expected = await plain(gen())
        got = await through_rust(gen(), capacity)
        assert got[0] == expected[0], (n, suspend_at, fail)
        assert type(got[1]) is type(expected[1]), (got, expected)


@pytest.mark.parametrize("capacity", [1, 2, 3, 4, 7])
async def test_slow_consumer_with_suspending_iterator(capacity):
    # The consumer holds each batch's first item until the pump has pulled more (or ended):
    # the pump fills the buffer mid-batch, waits for room; order and end stay intact.
    total = 5 * capacity + 2
    pulled = []
    pulled_changed = threading.Condition()

    async def gen():
        for i in range(total):
            if i % 2:
                await anyio.lowlevel.checkpoint()
            with pulled_changed:
                pulled.append(i)
                pulled_changed.notify_all()
            yield i
        raise Boom("after all")

    def on_item(item):
        with pulled_changed:
            # Wait until the pump pulled as far as the buffer allows beyond this item.
            pulled_changed.wait_for(
                lambda: len(pulled) >= min(total, item + 1 + capacity // 2), timeout=BOUND
            )

    items, exc = await through_rust(gen(), capacity, on_item)
    assert items == list(range(total))
    assert isinstance(exc, Boom)


class Ready:
    """A non-coroutine awaitable: `__await__` returns at once with `value`."""

    def __init__(self, value):
        self.value = value

    def __await__(self):
        return self.value
        yield  # noqa: unreachable: makes this a generator


class Stopping:
    """A non-coroutine awaitable that raises StopAsyncIteration when awaited."""

    def __await__(self):
        raise StopAsyncIteration
        yield  # noqa


class OddIterator:
    def __init__(self, n, how):
        self.i = 0
        self.n = n
        self.how = how

    def __aiter__(self):
        return self

    def __anext__(self):  # not async: returns an awaitable of its choosing
        i = self.i
        self.i += 1
        if i == self.n:
            if self.how == "raise_sync":
                raise StopAsyncIteration
            if self.how == "awaitable_stop":
                return Stopping()
            if self.how == "not_awaitable":
                return 42
            if self.how == "fail_sync":
                raise Boom("sync")
        if i > self.n:
            raise AssertionError("anext called after the end")
        return Ready(i)


@pytest.mark.parametrize("how", ["raise_sync", "awaitable_stop", "not_awaitable", "fail_sync"])
@pytest.mark.parametrize("capacity", [1, 2, 3, 64])
@pytest.mark.parametrize("n", [0, 1, 2, 5])
async def test_non_coroutine_anext_matches_async_for(how, capacity, n):
    expected = await plain(OddIterator(n, how))
    got = await through_rust(OddIterator(n, how), capacity)
    assert got[0] == expected[0]
    assert type(got[1]) is type(expected[1]), (got, expected)


async def test_many_streams_at_once():
    results = {}

    async def one(k):
        rng = random.Random(k)
        n = rng.randrange(0, 200)
        suspend_at = {i for i in range(n) if rng.random() < 0.2}
        fail = rng.random() < 0.3
        capacity = rng.choice([1, 2, 3, 5, 16, 64])
        gen = patterned(n, suspend_at, fail)
        got = await through_rust(gen(), capacity)
        expected = await plain(gen())
        results[k] = (got[0] == expected[0], type(got[1]) is type(expected[1]))

    async with anyio.create_task_group() as group:
        for k in range(100):
            group.start_soon(one, k)
    assert all(ok == (True, True) for ok in results.values()), {
        k: v for k, v in results.items() if v != (True, True)
    }


@pytest.mark.parametrize("capacity", [2, 3, 8])
async def test_items_then_exception_when_the_iterator_fails_mid_batch_after_a_suspension(
    capacity,
):
    # The first item's flush job is queued; the iterator suspends (job runs), yields more
    # without suspending, then fails in the middle of a batch: the pending items first.
    got = []

    async def gen():
        yield 0
        await anyio.lowlevel.checkpoint()
        yield 1
        yield 2
        raise Boom("mid batch")

    items, exc = await through_rust(gen(), capacity, got.append)
    assert items == [0, 1, 2]
    assert isinstance(exc, Boom)


async def test_an_item_whose_finaliser_raises_is_released_quietly(monkeypatch):
    # Pending items dropped by the pump (consumer gone) are released on the loop's thread;
    # a finaliser that raises must not break the pump or the release of the others.
    drop = DropInNextStep()
    closed = anyio.Event()
    finalised = []
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(type(u.exc_value)))

    class Nasty:
        def __init__(self, i):
            self.i = i

        def __del__(self):
            finalised.append(self.i)
            raise Boom("in __del__")


    async def gen():
        try:
            yield Nasty(0)
            await drop.let_the_consumer_drop()
            yield Nasty(1)
            yield Nasty(2)
            channel = pump_channel()
            spin_until(channel.closed, "the consumer to drop the stream")
            await anyio.sleep_forever()
        finally:
            closed.set()

    with pytest.raises(Stop):
        await m.collect_async_iter(gen(), 8, on_item=drop.on_item)
    with anyio.fail_after(BOUND):
        await closed.wait()
    await until(lambda: sorted(finalised) == [0, 1, 2], "every item finalised")
    assert unraisable == [Boom, Boom, Boom]

"""Round 18: attacks on aa2af45 (the pump steps its iterator with `async for item in
Begun(iterator)`, restarted once per batch; a batch is a quarter of the buffer), on asyncio,
uvloop and trio (anyio's backends, see conftest), on 3.11 and 3.14.

Tried, and what held (every scenario is a test below):
- `__aiter__` called exactly once across every batch restart of the `async for`: an iterable
  whose `__aiter__` makes a fresh iterator at each call (a second call would restart the
  numbers), iterators with `__anext__` alone (no `__aiter__`) or whose own `__aiter__` fails,
  capacities 1-9, never/often suspending; an object with only `__anext__`, and an `__aiter__`
  returning a non-iterator, refused with a TypeError as `async for` does. HELD.
- Class-based iterators playing random scripts (fixed seeds; capacities 1-9): items that are
  ready non-coroutine awaitables, coroutines, coroutines that suspend before or after making
  their item; ends by StopAsyncIteration raised synchronously, at the awaitable's first send,
  from a coroutine, after a suspension; Boom the same four ways; a non-awaitable, None, an
  `__await__` that itself raises (Boom or StopAsyncIteration). Against a plain `async for`:
  same items in order, same exception type, message and __cause__, the very exception object,
  as many `__anext__` calls (none after the end), `__aiter__` once, no aclose(). HELD.
- BEHAVIOUR CHANGE (not counted as a bug): an exception raised by `__await__()` itself (at the
  call, not at a send) used to reach the consumer as it was (`await anext(it)`), and a
  StopAsyncIteration raised there ended the stream; `async for` now wraps either in a
  TypeError "'async for' received an invalid object from __anext__" with the original as
  __cause__ (a KeyboardInterrupt too, which so no longer leaves the pump). This is exactly
  what Python's own `async for` does, the README's reference, so the stream stays truthful;
  test_an_await_that_raises_at_once_reads_as_async_for_reads_it pins it.
- Generators suspending exactly at batch boundaries (first, last, right after the flush,
  every other batch), with and without a failure at the end; exceptions right after a flush
  (first / second / last step of a batch, with or without a suspension first); 5,000 items
  in batches of one (capacities 1-4) and two (5). HELD.
- The consumer dropping the stream while the loop is blocked in a chosen step after a
  suspension (first item of a batch: flush_soon's answer; last item: the flush's missing
  grant; mid-batch: the `gone` test): never stepped past the end of its grant (at most a
  quarter of the buffer after the drop), GeneratorExit then finally once, every item
  released, the pump gone. The consumer dropping while the pump waits for room (never or
  always suspending generator, capacities 1-9): no step after, closed once. Random drops
  of random class-based iterators (capacities 1-9): aclose() exactly once, no step after it,
  `__aiter__` once, the consumer's prefix exact, steps bounded. HELD.
- A generator answering aclose()'s GeneratorExit with an item: the RuntimeError reported
  once (loop exception handler / trio: sys.unraisablehook), nothing stepped again, the
  generator left as a plain aclose() leaves it. HELD.
- The pump's task cancelled from outside (asyncio, uvloop) in step j, j around the batch
  boundaries, capacities 1-9: items 0..j-1 then the CancelledError, the generator ended
  once by it. HELD.
- The loop shutting down with a live stream: `asyncio.run` / `uvloop.run` returning (and
  trio.run with the consumer in a system task) while the pump is in a step suspended for ever
  or waits for room, capacities 1/4/5/8: the run returns, the generator is ended once (by
  the cancellation in its step, or by the pump's aclose()), no report, no unraisable, the
  pump gone. HELD.
- Items, iterators and pumps released after streams that were exhausted, failed or dropped
  (capacities 1/3/5/9). HELD.

Found (fixed, kept as a plain test):
- test_answered_cancel_leaves_aclose_with_no_cancellation_pending (asyncio and uvloop, 3.11
  and 3.14; older than aa2af45, a gap in 7e8f5fb's fix): the consumer's drop cancels the
  pump's task during a step; a step that answers the cancellation with an item (catches
  CancelledError, yields) left the task's count at 1, and aclose() ran with
  `cancelling() == 1`: the pump took the count back only when the step raised the
  cancellation. The pump's asyncio scope (`TaskScope`) now says it cancelled the task
  (`cancel_called`, as trio's scope does) and takes the cancellation back when the pump
  leaves it, either way.
"""

import asyncio
import contextlib
import gc
import random
import sys
import threading
import time
import weakref

import anyio
import pytest

import pyo3_async_pytests as m
from test_attack_batching import (
    BOUND,
    DropInNextStep,
    FirstItemThenDrop,
    Item,
    Stop,
    plain,
    pump_channel,
    pumps,
    queued_jobs,
    spin_until,
    through_rust,
    until,
)
from test_attack_batching_stop import record_reports

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


def batch_of(capacity):
    return (max(capacity, 1) + 3) // 4


# ---- `__aiter__` called once, whatever the iterable hands back ----


class Fresh:
    """An iterable whose `__aiter__` hands back a fresh iterator (over the same numbers) at
    each call: a second call would restart the numbers, duplicating items."""

    def __init__(self, n, suspend_every=0, only_anext=False):
        self.n = n
        self.suspend_every = suspend_every
        self.only_anext = only_anext
        self.aiter_calls = 0

    def __aiter__(self):
        self.aiter_calls += 1
        cls = OnlyAnext if self.only_anext else FreshIterator
        return cls(self)


class OnlyAnext:
    """An async iterator with `__anext__` alone (no `__aiter__`): `aiter()` accepts it, and
    `async for` over it, begun, must not ask it for `__aiter__`."""

    def __init__(self, owner):
        self.owner = owner
        self.i = 0
        self.anext_calls = 0

    async def __anext__(self):
        self.anext_calls += 1
        i = self.i
        if i >= self.owner.n:
            raise StopAsyncIteration
        self.i += 1
        if self.owner.suspend_every and i % self.owner.suspend_every == 0:
            await anyio.lowlevel.checkpoint()
        return i


class FreshIterator(OnlyAnext):
    """An async iterator whose own `__aiter__` fails: nothing may call it."""

    def __aiter__(self):
        raise AssertionError("the iterator's own __aiter__ was called")


@pytest.mark.parametrize("capacity", range(1, 10))
@pytest.mark.parametrize("only_anext", [False, True])
@pytest.mark.parametrize("suspend_every", [0, 3])
async def test_aiter_is_called_once_across_every_batch(capacity, only_anext, suspend_every):
    n = 6 * capacity + 5  # many batches, whatever the rounding
    iterable = Fresh(n, suspend_every, only_anext)
    items, exc = await through_rust(iterable, capacity)
    assert exc is None, exc
    assert items == list(range(n))
    assert iterable.aiter_calls == 1
    reference = Fresh(n, suspend_every, only_anext)
    assert (await plain(reference))[0] == items


async def test_an_object_with_only_anext_is_refused_like_async_for():
    class Lonely:
        async def __anext__(self):
            return 1

    expected = await plain(Lonely())
    assert isinstance(expected[1], TypeError)
    with pytest.raises(TypeError):
        await m.collect_async_iter(Lonely())


async def test_aiter_returning_a_non_iterator_is_refused_like_async_for():
    class Bad:
        calls = 0

        def __aiter__(self):
            Bad.calls += 1
            return object()

    expected = await plain(Bad())
    assert isinstance(expected[1], TypeError)
    Bad.calls = 0
    items, exc = await through_rust(Bad(), 4)
    assert (items, type(exc)) == ([], TypeError)
    assert Bad.calls == 1


# ---- odd `__anext__`s, randomised, against a plain `async for` ----


class Ready:
    """A non-coroutine awaitable that returns `value` without suspending."""

    def __init__(self, value):
        self.value = value

    def __await__(self):
        return self.value
        yield  # noqa: unreachable, makes a generator


class RaisesWhenSent:
    """A non-coroutine awaitable that raises `exc` at its first send."""

    def __init__(self, exc):
        self.exc = exc

    def __await__(self):
        raise self.exc
        yield  # noqa


class RaisesAtAwait:
    """An awaitable whose `__await__` itself raises (at the call, not at a send)."""

    def __init__(self, exc):
        self.exc = exc

    def __await__(self):
        raise self.exc


ITEM_KINDS = ["ready", "coro", "suspend", "suspend_twice", "suspend_after"]
END_KINDS = [
    "stop_sync",
    "stop_when_sent",
    "stop_coro",
    "stop_after_suspend",
    "boom_sync",
    "boom_when_sent",
    "boom_coro",
    "boom_after_suspend",
    "not_awaitable",
    "none",
    "raises_at_await",
    "stop_raised_at_await",
]


class Scripted:
    """An async iterator that plays a script: one kind of step per item, then an end. It
    records its `__anext__` calls, and fails loudly if stepped after its end."""

    def __init__(self, kinds, end, errors):
        self.kinds = kinds
        self.end = end
        self.errors = errors  # the exception instances raised, by position
        self.i = 0
        self.calls = 0
        self.aiter_calls = 0
        self.aclose_calls = 0

    def __aiter__(self):
        self.aiter_calls += 1
        return self

    def __anext__(self):
        self.calls += 1
        i = self.i
        self.i += 1
        if i > len(self.kinds):
            raise AssertionError("__anext__ called after the end")
        if i == len(self.kinds):
            return self.ending()
        kind = self.kinds[i]
        if kind == "ready":
            return Ready(i)
        return self.step(kind, i)

    async def step(self, kind, i):
        if kind in ("suspend", "suspend_twice"):
            await anyio.lowlevel.checkpoint()
        if kind == "suspend_twice":
            await anyio.lowlevel.checkpoint()
        value = i
        if kind == "suspend_after":
            # suspends after computing its item: the item of a step that suspended
            await anyio.lowlevel.checkpoint()
        return value

    def ending(self):
        end = self.end
        error = self.errors[end]
        if end == "stop_sync":
            raise StopAsyncIteration
        if end == "stop_when_sent":
            return RaisesWhenSent(StopAsyncIteration())
        if end == "boom_sync":
            raise error
        if end == "boom_when_sent":
            return RaisesWhenSent(error)
        if end == "not_awaitable":
            return 42
        if end == "none":
            return None
        if end == "raises_at_await":
            return RaisesAtAwait(error)
        if end == "stop_raised_at_await":
            return RaisesAtAwait(StopAsyncIteration())
        return self.ending_coro(end, error)

    async def ending_coro(self, end, error):
        if end.endswith("after_suspend"):
            await anyio.lowlevel.checkpoint()
        if end.startswith("stop"):
            raise StopAsyncIteration
        raise error

    async def aclose(self):
        self.aclose_calls += 1


def describe(exc):
    if exc is None:
        return None
    cause = exc.__cause__
    return (type(exc), str(exc), type(cause) if cause is not None else None)


def script(rng, capacity):
    n = rng.randrange(0, 5 * capacity + 4)
    weights = rng.choice([(8, 1, 1, 0, 0), (1, 1, 3, 1, 1), (3, 3, 0, 0, 1), (0, 0, 1, 0, 0)])
    kinds = rng.choices(ITEM_KINDS, weights=weights, k=n)
    return kinds, rng.choice(END_KINDS)


def errors():
    return {end: Boom(end) for end in END_KINDS}


@pytest.mark.parametrize("capacity", range(1, 10))
@pytest.mark.parametrize("seed", range(4))
async def test_scripted_iterators_match_async_for(capacity, seed):
    rng = random.Random(1800 + 31 * seed + capacity)
    for _ in range(15):
        kinds, end = script(rng, capacity)
        reference = Scripted(kinds, end, errors())
        expected = await plain(reference)
        mine = errors()
        scripted = Scripted(kinds, end, mine)
        got = await through_rust(scripted, capacity)
        what = (kinds, end)
        assert got[0] == expected[0], what
        assert describe(got[1]) == describe(expected[1]), (what, got[1], expected[1])
        if end.startswith("boom") and got[1] is not None:
            assert got[1] is mine[end], what  # the very exception, not a copy
        # Stepped exactly as often, `__aiter__` once, never closed (it ended on its own).
        assert (scripted.calls, scripted.aiter_calls, scripted.aclose_calls) == (
            reference.calls,
            reference.aiter_calls,
            reference.aclose_calls,
        ), what


@pytest.mark.parametrize("end", ["raises_at_await", "stop_raised_at_await"])
async def test_an_await_that_raises_at_once_reads_as_async_for_reads_it(end):
    # A change of aa2af45: `await anext(it)` let an exception of `__await__()` itself through
    # as it was (and `StopAsyncIteration` ended the stream); `async for` wraps it in a
    # TypeError ("received an invalid object from __anext__") whose __cause__ it is. That is
    # what Python's own `async for` does, the README's reference: the stream says the same.
    kinds = ["ready", "suspend"]
    expected = await plain(Scripted(kinds, end, errors()))
    got = await through_rust(Scripted(kinds, end, errors()), 3)
    assert got[0] == expected[0] == [0, 1]
    assert isinstance(got[1], TypeError) and "invalid object from __anext__" in str(got[1])
    assert describe(got[1]) == describe(expected[1])


# ---- batch boundaries ----


@pytest.mark.parametrize("capacity", range(1, 10))
@pytest.mark.parametrize("where", ["first", "last", "after_last", "every_other_batch"])
@pytest.mark.parametrize("fail", [False, True])
async def test_suspending_exactly_at_batch_boundaries(capacity, where, fail):
    batch = batch_of(capacity)
    n = 7 * batch + 1

    def suspends(i):
        position = i % batch
        if where == "first":
            return position == 0
        if where == "last":
            return position == batch - 1
        if where == "after_last":
            return i > 0 and position == 0
        return (i // batch) % 2 == 0 and position == 0

    def make():
        async def gen():
            for i in range(n):
                if suspends(i):
                    await anyio.lowlevel.checkpoint()
                yield i
                if where == "last" and suspends(i):
                    await anyio.lowlevel.checkpoint()  # also right after the batch's flush
            if fail:
                raise Boom(n)

        return gen()

    expected = await plain(make())
    got = await through_rust(make(), capacity)
    assert got[0] == expected[0] == list(range(n))
    assert describe(got[1]) == describe(expected[1])


@pytest.mark.parametrize("capacity", [1, 2, 3, 4, 5])
async def test_many_tiny_batches(capacity):
    # capacity 1..4: batches of 1, the `async for` restarted at every item.
    n = 5_000
    started = time.monotonic()
    items = await m.collect_async_iter(Fresh(n), capacity)
    assert items == list(range(n))
    assert time.monotonic() - started < BOUND


@pytest.mark.parametrize("capacity", [1, 4, 5, 9])
async def test_exception_right_after_each_flush(capacity):
    # The iterator fails at the first step of a batch (the `async for` just restarted), at
    # the second, or at the last; with or without a suspension first.
    batch = batch_of(capacity)
    for at in sorted({batch, batch + 1, 2 * batch - 1, 2 * batch, 3 * batch}):
        for suspend in (False, True):

            def make():
                async def gen():
                    for i in range(at):
                        yield i
                    if suspend:
                        await anyio.lowlevel.checkpoint()
                    raise Boom(at)

                return gen()

            got = await through_rust(make(), capacity)
            assert got[0] == list(range(at)), (at, suspend)
            assert describe(got[1]) == (Boom, str(at), None), (at, suspend)


# ---- the consumer gone at a chosen point of a batch ----


def pump_frame():
    """From inside a step of the iterator: the running pump's frame."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "pump_async_iter":
            return frame
        frame = frame.f_back
    raise AssertionError("not called from a pump's step")


@contextlib.contextmanager
def ending_logged(log):
    """Around a generator's body: logs the name of the exception that ends it, if any, then
    "finally"."""
    try:
        yield
    except BaseException as exc:
        log.append(type(exc).__name__)
        raise
    finally:
        log.append("finally")


class Ledger:
    """What a generator went through: items created (weakly), steps, its end."""

    def __init__(self):
        self.refs = []
        self.log = []
        self.closed = threading.Event()

    def item(self, i):
        item = Item(i)
        self.refs.append(weakref.ref(item))
        self.log.append(i)
        return item

    def pulled(self):
        return [entry for entry in self.log if isinstance(entry, int)]

    @contextlib.contextmanager
    def ending(self):
        """Around a generator's body: logs "exit" if it is closed (GeneratorExit), then
        "finally" however it ends, and sets `closed`."""
        try:
            yield
        except GeneratorExit:
            self.log.append("exit")
            raise
        finally:
            self.log.append("finally")
            self.closed.set()


async def settled(ledger, before):
    with anyio.fail_after(BOUND):
        while not ledger.closed.is_set():
            await anyio.lowlevel.checkpoint()
            await anyio.to_thread.run_sync(ledger.closed.wait, 0.01)
    await until(lambda: pumps() <= before and queued_jobs() == 0, "the pump to end")
    await until(lambda: all(ref() is None for ref in ledger.refs), "every item released")


class DropOnSignal:
    """A consumer (`on_item`, on tokio) that receives item 0, then drops the stream when the
    iterator, in a step of its choosing, says `go` (and blocks the loop until the drop)."""

    def __init__(self):
        self.got_first, self.go = threading.Event(), threading.Event()

    def on_item(self, item):
        self.got_first.set()
        assert self.go.wait(BOUND)
        raise Stop

    async def until_the_consumer_has_the_first_item(self):
        assert await anyio.to_thread.run_sync(self.got_first.wait, BOUND)

    def drop_now(self, channel):
        self.go.set()
        spin_until(channel.closed, "the consumer to drop the stream")


@pytest.mark.parametrize("capacity", range(2, 10))
@pytest.mark.parametrize("offset", range(0, 4))
async def test_drop_seen_at_each_position_of_a_batch(capacity, offset):
    # Item 0 reaches the consumer (step 1 suspends until it has), which then drops the
    # stream while the loop is blocked in step 1 + offset: the pump learns it at the first
    # item of a batch (flush_soon), at the batch's flush (no grant), or not before the batch
    # ends. It never steps further than the end of its grant, closes the generator once,
    # and releases every item.
    drop_at = 1 + offset
    if drop_at > capacity:
        pytest.skip("the items before the drop would not fit in the buffer")
    drop = DropOnSignal()
    ledger = Ledger()
    before = pumps()
    after_drop = []

    async def gen():
        with ledger.ending():
            yield ledger.item(0)
            await drop.until_the_consumer_has_the_first_item()
            channel = pump_channel()
            for i in range(1, 200):
                if i == drop_at:
                    drop.drop_now(channel)
                if channel.closed():
                    after_drop.append(i)
                yield ledger.item(i)
            await anyio.sleep_forever()

    seen = []
    with pytest.raises(Stop):
        await m.collect_async_iter(
            gen(), capacity, on_item=lambda item: (seen.append(item.value), drop.on_item(item))
        )
    await settled(ledger, before)
    assert seen == [0]
    assert after_drop[:1] == [drop_at], after_drop
    assert len(after_drop) <= batch_of(capacity), (after_drop, ledger.log)
    assert ledger.log[-2:] == ["exit", "finally"], ledger.log
    assert ledger.log.count("finally") == 1


@pytest.mark.parametrize("capacity", range(1, 10))
@pytest.mark.parametrize("suspending", [False, True])
async def test_drop_while_the_pump_waits_for_room(capacity, suspending):
    # The consumer holds item 0 until the pump waits for room (the buffer full), then drops
    # the stream: the pump, woken with no grant, closes the generator at its yield, once,
    # with no step after.
    ledger = Ledger()
    before = pumps()
    frames = []

    async def gen():
        with ledger.ending():
            frames.append(pump_frame())
            for i in range(10 * capacity + 10):
                if suspending:
                    await anyio.lowlevel.checkpoint()
                yield ledger.item(i)
            raise AssertionError("the generator ran out: the pump never waited")

    def on_item(item):
        deadline = time.monotonic() + BOUND
        while not frames[0].f_locals.get("waiting"):
            assert time.monotonic() < deadline, "the pump never waited for room"
            time.sleep(0)
        pulled_when_waiting.append(len(ledger.pulled()))
        frames.clear()  # the frame holds the pump's channel
        raise Stop

    pulled_when_waiting = []
    with pytest.raises(Stop):
        await m.collect_async_iter(gen(), capacity, on_item=on_item)
    await settled(ledger, before)
    assert ledger.log[-2:] == ["exit", "finally"], ledger.log
    assert ledger.log.count("finally") == 1
    # Nothing stepped after the pump started waiting; at most the consumer's item, a full
    # buffer (the consumer holds a batch of its own, at most another buffer).
    assert len(ledger.pulled()) == pulled_when_waiting[0] <= 1 + 2 * capacity, ledger.pulled()


@pytest.mark.parametrize("capacity", [1, 2, 5, 8])
async def test_answered_cancel_leaves_aclose_with_no_cancellation_pending(loop_name, capacity):
    # The drop cancels the step under way; the iterator answers the cancellation with an
    # item. The pump then closes it: its aclose() must run with no cancellation pending or
    # counted (asyncio 3.11+: `task.cancelling()`, as after a cancellation the pump took back,
    # test_attack_batching_stop), and uncancelled (trio: outside the step's scope). Found
    # by this round on asyncio and uvloop: the count stayed 1 (the pump took it back only
    # when the step raised the cancellation); the pump's `TaskScope` now takes it back.
    drop = DropInNextStep()
    seen = []
    done = anyio.Event()
    cancelled = anyio.get_cancelled_exc_class()

    def counted():
        if loop_name == "trio":
            return 0
        # 3.10 has no count: 0 throughout.
        return getattr(asyncio.current_task(), "cancelling", lambda: 0)()

    class Iterator(FirstItemThenDrop):
        async def after_drop(self):
            try:
                await anyio.sleep_forever()
            except cancelled:
                seen.append(("answered", counted()))
            return "answer"

        async def aclose(self):
            seen.append(("aclose", counted()))
            try:
                for _ in range(3):
                    await anyio.lowlevel.checkpoint()
                seen.append("aclose ran to its end")
            finally:
                done.set()

    with pytest.raises(Stop):
        await m.collect_async_iter(Iterator(drop), capacity, on_item=drop.on_item)
    with anyio.fail_after(BOUND):
        await done.wait()
    expected_count = 0 if loop_name == "trio" or sys.version_info < (3, 11) else 1
    assert seen == [("answered", expected_count), ("aclose", 0), "aclose ran to its end"], seen


# ---- the loop's shutdown while a stream is alive (the pump cancelled from outside) ----


def run_in_a_thread(function):
    """`function()` in a daemon thread: a hang fails the test instead of blocking it."""
    outcome = []

    def target():
        try:
            outcome.append(("value", function()))
        except BaseException as exc:  # noqa: reported below
            outcome.append(("error", exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), "the loop's run never returned"
    (result,) = outcome
    if result[0] == "error":
        raise result[1]
    return result[1]


def shutdown_scenario(name, where, capacity):
    """Starts a stream in the background of `asyncio.run` (uvloop: its runner; trio: a system
    task), lets its pump reach `where` (in a step suspended for ever, or waiting for room),
    then returns from the main coroutine: the loop cancels the pump from outside and closes.
    Returns what the generator went through and what the loop reported."""
    log = []
    reports = []
    hold = threading.Event()
    got = []
    frames = []
    in_step = threading.Event()

    async def gen():
        with ending_logged(log):
            frames.append(pump_frame())
            for i in range(10 * capacity + 10):
                if where == "step" and i == 1:
                    in_step.set()
                    await (anyio.sleep_forever() if name == "trio" else asyncio.Event().wait())
                log.append(i)
                yield i

    def on_item(item):
        got.append(item)
        if where == "waiting":
            assert hold.wait(BOUND)

    def reached():
        if where == "step":
            return in_step.is_set()
        return bool(frames) and frames[0].f_locals.get("waiting") is True

    async def asyncio_main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: reports.append(context))
        loop.create_task(m.collect_async_iter(gen(), capacity, on_item=on_item))
        deadline = time.monotonic() + BOUND
        while not reached():
            assert time.monotonic() < deadline, f"the pump never reached {where}"
            await asyncio.sleep(0)
        frames.clear()

    async def trio_main():
        import trio

        async def consume():
            await m.collect_async_iter(gen(), capacity, on_item=on_item)

        trio.lowlevel.spawn_system_task(consume)
        deadline = time.monotonic() + BOUND
        while not reached():
            assert time.monotonic() < deadline, f"the pump never reached {where}"
            await trio.lowlevel.checkpoint()
        frames.clear()

    unraisable = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda args: unraisable.append(args.exc_value)
    try:
        if name == "asyncio":
            run_in_a_thread(lambda: asyncio.run(asyncio_main()))
        elif name == "uvloop":
            import uvloop

            run_in_a_thread(lambda: uvloop.run(asyncio_main()))
        else:
            import trio

            try:
                run_in_a_thread(lambda: trio.run(trio_main))
            except BaseException as exc:
                # trio: a system task that raises crashes the run (TrioInternalError)
                reports.append({"exception": exc})
        hold.set()
        deadline = time.monotonic() + BOUND
        while pumps() > 0 or "finally" not in log:
            assert time.monotonic() < deadline, (log, pumps())
            gc.collect()
            m.pyo3_async_stats()
            time.sleep(0.001)
    finally:
        hold.set()
        sys.unraisablehook = old_hook
    return log, reports, unraisable, got


@pytest.mark.parametrize("name", ["asyncio", "uvloop", "trio"])
@pytest.mark.parametrize("where", ["step", "waiting"])
@pytest.mark.parametrize("capacity", [1, 4, 5, 8])
def test_shutdown_with_a_live_stream_closes_the_generator_once(name, where, capacity):
    log, reports, unraisable, got = shutdown_scenario(name, where, capacity)
    assert log.count("finally") == 1, log
    # In a step: the cancellation ends it; waiting for room: the pump closes it (aclose).
    expected_end = "GeneratorExit" if where == "waiting" else None
    if expected_end is not None:
        assert log[-2:] == [expected_end, "finally"], log
    else:
        assert log[-1] == "finally" and log[-2] in ("CancelledError", "Cancelled"), log
    items = [entry for entry in log if isinstance(entry, int)]
    assert got == items[: len(got)]
    assert not [r for r in reports if "destroyed but it is pending" in r.get("message", "")]
    assert unraisable == [], unraisable
    assert [r.get("exception") for r in reports if r.get("exception") is not None] == [], reports


# ---- the consumer leaving at random points; the iterator closed exactly once ----


class Endless(Scripted):
    """A class-based iterator that never ends, with random kinds of steps; records its
    steps and closes, and whether it was stepped after its aclose()."""

    def __init__(self, rng):
        super().__init__([], None, {})
        self.rng = rng
        self.weights = rng.choice([(8, 1, 1, 0, 0), (1, 1, 3, 1, 1), (0, 0, 1, 0, 0)])
        self.stepped_after_close = 0
        self.closed = threading.Event()

    def __anext__(self):
        self.calls += 1
        if self.aclose_calls:
            self.stepped_after_close += 1
        i = self.i
        self.i += 1
        kind = self.rng.choices(ITEM_KINDS, weights=self.weights)[0]
        if kind == "ready":
            return Ready(i)
        return self.step(kind, i)

    async def aclose(self):
        self.aclose_calls += 1
        await anyio.lowlevel.checkpoint()
        self.closed.set()


@pytest.mark.parametrize("capacity", range(1, 10))
@pytest.mark.parametrize("seed", range(3))
async def test_random_drops_close_the_iterator_exactly_once(capacity, seed):
    rng = random.Random(18_000 + 97 * seed + capacity)
    before = pumps()
    for _ in range(6):
        iterator = Endless(random.Random(rng.random()))
        k = rng.randrange(0, 3 * capacity + 2)
        seen = []

        def on_item(item, k=k, seen=seen):
            seen.append(item)
            if item == k:
                raise Stop

        with pytest.raises(Stop):
            await m.collect_async_iter(iterator, capacity, on_item=on_item)
        with anyio.fail_after(BOUND):
            while not iterator.closed.is_set():
                await anyio.to_thread.run_sync(iterator.closed.wait, 0.01)
        await until(lambda: pumps() <= before and queued_jobs() == 0, "the pump to end")
        assert seen == list(range(k + 1))
        assert (iterator.aiter_calls, iterator.aclose_calls, iterator.stepped_after_close) == (
            1,
            1,
            0,
        )
        # The consumer holds at most a batch of its own and the buffer; after the drop, the
        # pump steps to the end of its grant at most.
        assert iterator.calls <= k + 1 + 2 * capacity + batch_of(capacity), (k, iterator.calls)


@pytest.mark.parametrize("capacity", [1, 2, 5, 8])
@pytest.mark.parametrize("how", ["yield", "suspend_then_yield"])
async def test_generator_ignoring_generator_exit_is_reported_once(
    loop_name, monkeypatch, capacity, how
):
    # A generator that answers aclose()'s GeneratorExit with another item: aclose() fails
    # (RuntimeError, "ignored GeneratorExit"), as in a plain `async for` + aclose(); the pump
    # reports it once and ends, and nothing steps the generator again.
    reports = record_reports(loop_name, monkeypatch)
    before = pumps()
    log = []

    async def stubborn():
        i = 0
        while True:
            try:
                yield i
            except GeneratorExit:
                log.append("exit")
                if how == "suspend_then_yield":
                    await anyio.lowlevel.checkpoint()
                break
            i += 1
        yield "again"  # a second aclose() ends it here
        log.append("stepped after the ignored exit")

    # The reference: what a plain async for + break + aclose() gets.
    reference = stubborn()
    async for _ in reference:
        break
    with pytest.raises(RuntimeError, match="ignored GeneratorExit"):
        await reference.aclose()
    second = await second_close(reference)
    assert log == ["exit"]
    log.clear()

    def on_item(item):
        if item == 2:
            raise Stop

    keep = stubborn()
    with pytest.raises(Stop):
        await m.collect_async_iter(keep, capacity, on_item=on_item)
    await until(lambda: queued_jobs() == 0 and reports, "the report")
    for _ in range(5):
        await anyio.lowlevel.checkpoint()
    assert log == ["exit"]
    assert len(reports) == 1 and isinstance(reports[0], RuntimeError), reports
    assert "ignored GeneratorExit" in str(reports[0])
    reports.clear()  # its traceback holds the pump's frame
    await until(lambda: pumps() <= before, "the pump to end")
    # The generator is left as a plain aclose() leaves it.
    assert await second_close(keep) == second
    assert log == ["exit"]


async def second_close(generator):
    try:
        await generator.aclose()
    except BaseException as exc:  # noqa: compared
        return type(exc)
    return None


@pytest.mark.parametrize("capacity", range(1, 10))
async def test_outside_cancellation_at_each_position_of_a_batch(loop_name, capacity):
    # asyncio: the pump's task cancelled from elsewhere in step j (which suspends once so
    # that the cancellation lands in it): the consumer gets items 0..j-1, in order, then
    # the CancelledError; the generator ends once by the cancellation, and is not closed
    # again (its aclose() would find it finished).
    if loop_name == "trio":
        pytest.skip("asyncio: the pump is a task anyone may cancel")
    batch = batch_of(capacity)
    for j in sorted({0, 1, batch - 1, batch, batch + 1, 2 * batch, 2 * batch + 1}):
        log = []
        before = pumps()

        async def gen(j=j, log=log):
            with ending_logged(log):
                for i in range(100):
                    if i == j:
                        asyncio.current_task().cancel()
                        await asyncio.sleep(0)
                    yield i

        items, exc = [], None
        try:
            await m.collect_async_iter(gen(), capacity, on_item=items.append)
        except asyncio.CancelledError as e:
            exc = e
        assert isinstance(exc, asyncio.CancelledError), (j, items)
        assert items == list(range(j)), (j, items)
        del exc  # its traceback holds the pump's frame
        await until(lambda: pumps() <= before and queued_jobs() == 0, "the pump to end")
        assert log == ["CancelledError", "finally"], (j, log)


# ---- nothing kept: items, iterators and pumps released at every kind of end ----


@pytest.mark.parametrize("capacity", [1, 3, 5, 9])
@pytest.mark.parametrize("end", ["exhausted", "failed", "dropped"])
async def test_every_item_and_iterator_is_released(capacity, end):
    before = pumps()
    refs = []
    iterator_refs = []

    def make(n):
        async def gen():
            for i in range(n):
                if i % 3 == 1:
                    await anyio.lowlevel.checkpoint()
                item = Item(i)
                refs.append(weakref.ref(item))
                yield item
                del item
            if end == "failed":
                raise Boom(n)
            if end == "dropped":
                await anyio.sleep_forever()  # the consumer leaves before

        iterator = gen()
        iterator_refs.append(weakref.ref(iterator))
        return iterator

    n = 4 * capacity + 3
    for _ in range(5):
        if end == "dropped":

            def on_item(item):
                if item.value == n - 2:
                    raise Stop

            with pytest.raises(Stop):
                await m.collect_async_iter(make(n), capacity, on_item=on_item)
        elif end == "failed":
            with pytest.raises(Boom):
                await m.collect_async_iter(make(n), capacity)
        else:
            got = await m.collect_async_iter(make(n), capacity)
            assert [item.value for item in got] == list(range(n))
            del got
    await until(lambda: pumps() <= before and queued_jobs() == 0, "every pump to end")
    await until(lambda: all(ref() is None for ref in refs), "every item released")
    await until(lambda: all(ref() is None for ref in iterator_refs), "every iterator released")

"""Bad input gets a clear Python error, never a panic, a hang or a crash: objects that are
not awaitable, awaitables whose `__await__` misbehaves, coroutines driven twice or from the
wrong thread, odd `athrow` arguments, async iterables that are not."""

import asyncio
import threading

import anyio
import anyio.lowlevel
import pytest

import pyo3_async_pytests as m
from helpers import until

pytestmark = pytest.mark.anyio


class RaisingAwait:
    def __await__(self):
        raise KeyError("from __await__")


class NonIteratorAwait:
    def __await__(self):
        return 42


class BadYield:
    def __await__(self):
        yield 42


class BrokenSend:
    """`__await__` returns an iterator whose `send` raises a foreign exception."""

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        raise ZeroDivisionError("broken send")

    def send(self, value):
        raise ZeroDivisionError("broken send")


@pytest.mark.parametrize(
    "make", [lambda: 42, lambda: object(), lambda: (lambda: None)], ids=["int", "object", "function"]
)
async def test_not_awaitable_everywhere(make):
    with pytest.raises(TypeError, match="can't be used in 'await' expression"):
        m.await_py(make())
    with pytest.raises(TypeError, match="can't be used in 'await' expression"):
        await m.spawn_from_tokio(make())
    with pytest.raises(TypeError, match="can't be used in 'await' expression"):
        await m.spawn_with_from_tokio(make)


async def test_misbehaving_await_is_reported_with_its_own_error():
    with pytest.raises(KeyError, match="from __await__"):
        await m.await_py(RaisingAwait())
    with pytest.raises(TypeError, match="non-iterator"):
        await m.await_py(NonIteratorAwait())
    with pytest.raises(ZeroDivisionError, match="broken send"):
        await m.await_py(BrokenSend())
    with pytest.raises(KeyError, match="from __await__"):
        await m.spawn_from_tokio(RaisingAwait())


async def test_bad_yield_reaches_the_awaiting_code(loop_name):
    if loop_name == "trio":
        pytest.skip("trio treats a foreign yield as an internal error of the run")
    # asyncio's task refuses the yielded 42 by throwing RuntimeError at the await, which
    # the delegated await forwards into `BadYield`: it surfaces in the awaiting Rust future.
    with pytest.raises(RuntimeError, match="bad yield"):
        await m.await_py(BadYield())


async def test_coroutine_given_to_two_tasks(loop_name):
    if loop_name == "trio":
        pytest.skip("asyncio API")
    trigger = m.Trigger()
    coroutine = trigger.wait("first")
    first = asyncio.ensure_future(coroutine)
    await asyncio.sleep(0)  # the first task suspends on the coroutine
    second = asyncio.ensure_future(coroutine)
    with pytest.raises(RuntimeError, match="driven by two tasks"):
        await second
    trigger.fire()
    assert await first == "first"


async def test_awaiting_a_coroutine_another_task_awaits():
    trigger = m.Trigger()
    coroutine = trigger.wait("once")  # pending until fired: no timer racing the second await
    results = []
    started = []

    async def await_it():
        started.append(True)  # no suspension between this and the await
        results.append(await coroutine)

    async with anyio.create_task_group() as group:
        group.start_soon(await_it)
        await until(lambda: started)
        with pytest.raises(RuntimeError, match="being awaited already"):
            await coroutine
        trigger.fire()
    assert results == ["once"]


def test_driving_a_pending_coroutine_on_a_thread_without_a_loop():
    probe = m.Probe()
    errors = []

    def drive():
        coroutine = m.pending_forever(probe)
        try:
            coroutine.send(None)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=drive)
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError), errors
    assert probe.dropped


def test_driving_with_an_explicit_backend_and_no_loop():
    with pytest.raises(RuntimeError, match="no running event loop"):
        m.pending_forever(m.Probe(), backend="asyncio").send(None)


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((None,), TypeError, "deriving from BaseException"),
        ((object,), TypeError, "deriving from BaseException"),
        ((ValueError(), "value"), TypeError, "separate value"),
        ((ValueError, ValueError("same")), ValueError, "same"),
        ((ValueError, ("a", "b")), ValueError, "a"),
        ((KeyboardInterrupt,), KeyboardInterrupt, None),
    ],
)
async def test_athrow_with_odd_arguments(args, error, match):
    generator = m.count(3)
    assert await anext(generator) == 0
    with pytest.raises(error, match=match):
        await generator.athrow(*args)
    if error is not TypeError:
        # The exception reached the stream: it is finished.
        with pytest.raises(StopAsyncIteration):
            await anext(generator)


async def test_asend_refuses_values():
    with pytest.raises(TypeError, match="accepts only None"):
        m.count(3).asend(1)


class AnextNotAwaitable:
    def __aiter__(self):
        return self

    def __anext__(self):
        return 42


class AiterRaises:
    def __aiter__(self):
        raise KeyError("no iteration today")


class AnextRaisesLater:
    def __init__(self):
        self.i = 0

    def __aiter__(self):
        return self

    async def __anext__(self):
        self.i += 1
        if self.i > 2:
            raise ZeroDivisionError("third item")
        return self.i


async def test_bad_async_iterables_for_py_async_iter():
    with pytest.raises(TypeError, match="__aiter__"):
        await m.collect_async_iter([1, 2, 3])
    # CPython's own message, as the pump iterates with `async for`.
    with pytest.raises(TypeError, match="'async for' received an invalid object from __anext__"):
        await m.collect_async_iter(AnextNotAwaitable())
    with pytest.raises(KeyError, match="no iteration today"):
        await m.collect_async_iter(AiterRaises())
    with pytest.raises(ZeroDivisionError, match="third item"):
        await m.collect_async_iter(AnextRaisesLater())

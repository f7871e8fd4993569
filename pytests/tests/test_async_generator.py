"""Rust streams iterated as Python async generators."""

import collections.abc
import contextlib
import gc

import anyio
import pytest

import pyo3_async_pytests as m
from helpers import until

pytestmark = pytest.mark.anyio


class Custom(Exception):
    pass


async def test_async_for_over_ready_items():
    assert [i async for i in m.count(5)] == [0, 1, 2, 3, 4]


async def test_items_woken_from_tokio_threads():
    assert [i async for i in m.count_from_tokio(200)] == list(range(200))


async def test_items_polled_with_interpreter_released():
    assert [i async for i in m.count_from_tokio(50, allow_threads=True)] == list(range(50))


def test_is_an_async_generator():
    generator = m.count(1)
    assert isinstance(generator, collections.abc.AsyncGenerator)
    assert generator.__aiter__() is generator


async def test_anext_asend_and_exhaustion():
    generator = m.count(2)
    assert await anext(generator) == 0
    assert await generator.asend(None) == 1
    for _ in range(2):
        with pytest.raises(StopAsyncIteration):
            await anext(generator)
    assert await anext(generator, "default") == "default"


async def test_asend_value_is_an_error():
    with pytest.raises(TypeError, match="only None"):
        m.count(2).asend(1)


async def test_error_item_keeps_type_and_ends_stream():
    error = Custom("third item")
    generator = m.fail_after(2, error)
    seen = []
    with pytest.raises(Custom) as raised:
        async for i in generator:
            seen.append(i)
    assert raised.value is error
    assert seen == [0, 1]
    with pytest.raises(StopAsyncIteration):
        await anext(generator)


async def test_panic_in_stream_becomes_exception():
    generator = m.panic_after(1, "stream broke")
    assert await anext(generator) == 0
    with pytest.raises(m.PanicError, match="stream broke"):
        await anext(generator)
    with pytest.raises(StopAsyncIteration):
        await anext(generator)


async def test_early_aclose_drops_stream():
    probe = m.Probe()
    generator = m.endless(3, probe)
    assert await anext(generator) == 0
    await generator.aclose()
    assert probe.dropped
    with pytest.raises(StopAsyncIteration):
        await anext(generator)
    await generator.aclose()


async def test_break_inside_aclosing_drops_stream():
    probe = m.Probe()
    async with contextlib.aclosing(m.endless(10, probe)) as generator:
        async for i in generator:
            if i == 3:
                break
    assert probe.dropped


async def test_break_then_garbage_collection_drops_stream():
    probe = m.Probe()
    generator = m.endless(10, probe)
    async for i in generator:
        if i == 3:
            break
    assert not probe.dropped
    del generator
    gc.collect()
    assert probe.dropped


async def test_athrow_raises_and_ends_stream():
    probe = m.Probe()
    generator = m.endless(3, probe)
    assert await anext(generator) == 0
    error = Custom("thrown")
    with pytest.raises(Custom) as raised:
        await generator.athrow(error)
    assert raised.value is error
    assert probe.dropped
    with pytest.raises(StopAsyncIteration):
        await anext(generator)
    with pytest.raises(KeyError, match="legacy"):
        await m.count(1).athrow(KeyError, "legacy", None)
    with pytest.raises(TypeError, match="deriving from BaseException"):
        m.count(1).athrow("not an exception")


async def test_cancelled_anext_ends_stream():
    probe = m.Probe()
    generator = m.endless(1, probe)
    assert await anext(generator) == 0
    with anyio.move_on_after(0.01) as scope:
        await anext(generator)
    assert scope.cancelled_caught
    assert probe.dropped
    with pytest.raises(StopAsyncIteration):
        await anext(generator)


async def test_concurrent_anext_is_an_error():
    probe = m.Probe()
    generator = m.endless(0, probe)
    async with anyio.create_task_group() as group:
        group.start_soon(anext, generator)
        await until(lambda: probe.polled)
        with pytest.raises(RuntimeError, match="already running"):
            await anext(generator)
        with pytest.raises(RuntimeError, match="already running"):
            await generator.aclose()
        group.cancel_scope.cancel()
    assert probe.dropped


async def test_a_stream_reaching_into_its_own_generator_is_told_it_is_running():
    refused = []

    def poll():
        # Inside the stream's poll: the generator is running, whatever asks for it.
        for step in (generator.__anext__(), generator.aclose()):
            with pytest.raises(RuntimeError, match="already running") as raised:
                step.send(None)
            refused.append(raised.value)
        return None if len(refused) > 2 else len(refused)

    generator = m.calls_back(poll)
    assert [i async for i in generator] == [2]
    assert len(refused) == 4
    assert [i async for i in generator] == []


async def test_explicit_backend(loop_name):
    name = "trio" if loop_name == "trio" else "asyncio"
    assert [i async for i in m.count(3, backend=name)] == [0, 1, 2]


def reach_back(generator):
    """What Python code in a stream's destructor sees of the generator the stream was in."""
    seen = [("repr", repr(generator).startswith("<pyo3_async async_generator"))]
    step = generator.__anext__()
    try:
        step.send(None)
        seen.append(("__anext__", "yielded"))
    except BaseException as exc:  # noqa: BLE001 - the outcome is what is checked
        seen.append(("__anext__", type(exc).__name__))
    closing = generator.aclose()
    try:
        closing.send(None)
        seen.append(("aclose", "yielded"))
    except BaseException as exc:  # noqa: BLE001
        seen.append(("aclose", type(exc).__name__))
    return seen


@pytest.mark.parametrize("how", ["ends", "aclose", "break then aclose"])
async def test_a_stream_destructor_that_reaches_back_into_its_generator(how):
    # The stream is out of the generator when it is dropped: Python code in its destructor
    # finds an ended generator (no second step, no error about one running), on every loop.
    seen = []
    holder = []

    def on_drop():
        seen.extend(reach_back(holder[0]))

    generator = m.stream_calls_on_drop(3, how == "ends", on_drop)
    holder.append(generator)
    if how == "ends":
        assert [item async for item in generator] == [0, 1, 2]
    elif how == "aclose":
        assert await generator.__anext__() == 0
        await generator.aclose()
    else:
        async for item in generator:
            if item == 1:
                break
        assert seen == []
        await generator.aclose()
    assert seen == [
        ("repr", True),
        ("__anext__", "StopAsyncIteration"),
        ("aclose", "StopIteration"),
    ]
    # The generator is ended for everyone after it, too.
    with pytest.raises(StopAsyncIteration):
        await generator.__anext__()


async def test_a_stream_destructor_run_by_the_collector_finds_its_generator_gone():
    import sys
    import weakref

    seen = []
    unraisable = []

    def on_drop():
        seen.append(reference())

    generator = m.stream_calls_on_drop(3, False, on_drop)
    reference = weakref.ref(generator)
    assert await generator.__anext__() == 0
    previous, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        del generator
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert seen == [None] and unraisable == []

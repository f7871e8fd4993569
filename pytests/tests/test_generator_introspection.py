"""What Python's tools read of a Rust async generator (`ag_running`, `ag_suspended`, `ag_state`,
`ag_frame`, `ag_code`, `ag_await`), against what they read of a native one."""

import inspect
import sys

import anyio
import anyio.lowlevel
import pytest

import pyo3_async_pytests as m

pytestmark = pytest.mark.anyio


def state(generator):
    """The state as this Python's `inspect` reads it (3.12+), else as 3.15's does."""
    if hasattr(inspect, "getasyncgenstate"):
        return inspect.getasyncgenstate(generator)
    return generator.ag_state


async def native_count(n):
    for i in range(n):
        yield i


# A native generator has `ag_suspended` from 3.12 on: compared with ours there only.
MAKERS = [pytest.param(m.count, id="rust")]
if sys.version_info >= (3, 12):
    MAKERS.append(pytest.param(native_count, id="native"))


@pytest.mark.parametrize("make", MAKERS)
async def test_the_states_of_a_generator_run_to_its_end(make):
    generator = make(2)
    assert state(generator) == "AGEN_CREATED"
    assert not generator.ag_running and not generator.ag_suspended
    assert await anext(generator) == 0
    assert state(generator) == "AGEN_SUSPENDED" and generator.ag_suspended
    assert await anext(generator) == 1
    with pytest.raises(StopAsyncIteration):
        await anext(generator)
    assert state(generator) == "AGEN_CLOSED"
    assert generator.ag_frame is None
    assert not generator.ag_running and not generator.ag_suspended


@pytest.mark.parametrize("make", MAKERS)
async def test_closed_before_its_first_item(make):
    generator = make(3)
    await generator.aclose()
    assert state(generator) == "AGEN_CLOSED"
    assert generator.ag_frame is None


async def test_running_while_its_stream_runs_python_code():
    seen = []

    def callback():
        if seen:
            return None
        seen.append((state(generator), generator.ag_running, generator.ag_frame is not None))
        return "item"

    generator = m.calls_back(callback)
    assert [item async for item in generator] == ["item"]
    assert seen == [("AGEN_RUNNING", True, True)]
    assert state(generator) == "AGEN_CLOSED"


async def test_suspended_while_an_item_is_pending():
    probe = m.Probe()
    generator = m.endless(0, probe)
    async with anyio.create_task_group() as group:

        async def pull():
            await anext(generator)

        group.start_soon(pull)
        while probe.polled < 1:
            await anyio.lowlevel.checkpoint()
        assert state(generator) == "AGEN_SUSPENDED"
        assert generator.ag_await is None, "what the stream awaits is Rust's"
        group.cancel_scope.cancel()
    # A cancelled `__anext__` ends the generator, as it ends a native one.
    assert state(generator) == "AGEN_CLOSED"
    assert probe.dropped


async def test_the_frame_and_code_name_the_rust_function():
    generator = m.macro_count(2)
    frame = generator.ag_frame
    assert frame is not None and frame is generator.ag_frame, "one frame, kept"
    assert frame.f_code.co_name == "macro_count"
    assert generator.ag_code.co_name == "macro_count"
    assert generator.ag_code.co_filename.endswith(".rs")
    assert frame.f_code.co_firstlineno == generator.ag_code.co_firstlineno > 1
    if sys.version_info < (3, 13):  # 3.13+ refuses to clear a suspended frame
        frame.clear()
        assert generator.ag_frame is not None, "a cleared frame is made again while it lives"
    assert [i async for i in generator] == [0, 1]
    assert generator.ag_frame is None


async def test_an_unlabelled_generator_has_a_frame_of_its_own_type():
    generator = m.count(1)
    assert generator.ag_code.co_name == "AsyncGenerator"
    assert generator.ag_code.co_filename == "<rust>"
    await generator.aclose()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="inspect.getasyncgenstate is 3.12's")
async def test_inspect_reads_the_same_state_as_ag_state():
    generator = m.count(1)
    for _ in range(2):
        assert inspect.getasyncgenstate(generator) == generator.ag_state
        async for _ in generator:
            pass
    assert generator.ag_state == "AGEN_CLOSED"

"""What production monitoring sees: `pyo3_async::stats` and `py_stats` (added to the test module
in one line, src/native.rs), counted as things begin and end; and the `tracing` feature's
spans around every poll of a Rust coroutine or generator (the module records spans with a
subscriber of its own, src/spans.rs). On every loop."""

import asyncio

import anyio
import pytest
import trio

import pyo3_async_pytests as m
from helpers import until_threads

FIELDS = {"loops", "queued_jobs", "suspended_coroutines", "python_tasks", "async_iter_pumps"}


def stats():
    return m.pyo3_async_stats()


def test_the_python_function_reports_every_field():
    assert set(stats()) == FIELDS
    assert all(isinstance(value, int) and value >= 0 for value in stats().values())


@pytest.mark.anyio
async def test_suspended_coroutines_are_counted_until_they_finish(loop_name):
    before = stats()["suspended_coroutines"]
    # Ready at once: never suspended, never counted.
    assert await m.echo(1) == 1
    assert stats()["suspended_coroutines"] == before
    async with anyio.create_task_group() as task_group:
        for _ in range(10):
            task_group.start_soon(m.parks_forever)
        await anyio.wait_all_tasks_blocked()
        now = stats()
        assert now["suspended_coroutines"] == before + 10
        assert now["loops"] >= 1
        task_group.cancel_scope.cancel()
    assert stats()["suspended_coroutines"] == before


@pytest.mark.anyio
async def test_python_work_started_for_rust_is_counted_until_its_outcome_is_handed_over(loop_name):
    before = stats()["python_tasks"]
    event = anyio.Event()

    async def wait():
        await event.wait()
        return "done"

    async with anyio.create_task_group() as task_group:
        results = []

        async def spawn():
            results.append(await m.spawn_from_tokio(wait()))

        task_group.start_soon(spawn)
        # The tokio thread starts the work: its own time, not the loop's.
        await until_threads(lambda: stats()["python_tasks"] == before + 1)
        event.set()
    assert results == ["done"]
    assert stats()["python_tasks"] == before


@pytest.mark.anyio
async def test_async_iterator_pumps_are_counted_while_they_run(loop_name):
    before = stats()["async_iter_pumps"]
    event = anyio.Event()

    async def items():
        yield 1
        await event.wait()
        yield 2

    async with anyio.create_task_group() as task_group:
        results = []

        async def take():
            results.append(await m.take_async_iter(items(), 2))

        task_group.start_soon(take)
        await until_threads(lambda: stats()["async_iter_pumps"] == before + 1)
        event.set()
    assert results == [[1, 2]]
    await until_threads(lambda: stats()["async_iter_pumps"] == before)


@pytest.mark.anyio
async def test_a_delegated_awaitable_ending_at_once_leaves_no_count(loop_name):
    async def at_once():
        return 1

    before = stats()["suspended_coroutines"]
    for _ in range(20):
        assert await m.delegate_to(at_once()) == 1
    assert stats()["suspended_coroutines"] == before


@pytest.mark.anyio
async def test_a_generators_span_names_the_task_pulling_each_item(loop_name):
    generator = m.spans_in_generator(2)
    pulled = []

    async def pull():
        pulled.append((task_name(loop_name), await generator.__anext__()))

    for puller in ("first puller", "second puller"):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(pull, name=puller)
    assert [fields["task"] for _, (_, fields) in pulled] == [name for name, _ in pulled]
    assert pulled[0][0] != pulled[1][0]


@pytest.mark.anyio
async def test_a_quiet_loop_has_no_queued_jobs(loop_name):
    await anyio.lowlevel.checkpoint()
    assert stats()["queued_jobs"] == 0


def task_name(loop_name):
    if loop_name == "trio":
        return trio.lowlevel.current_task().name
    return asyncio.current_task().get_name()


@pytest.mark.anyio
async def test_every_poll_of_a_coroutine_runs_in_its_span(loop_name):
    before, after = await m.span_during_poll()
    expected = {
        "function": "span_during_poll",
        "loop": "trio" if loop_name == "trio" else "asyncio",
        "task": task_name(loop_name),
    }
    assert before == after == ("coroutine", expected)
    # Outside a poll, no span.
    assert m.span_at_call() is None


@pytest.mark.anyio
async def test_every_step_of_a_generator_runs_in_the_generators_span(loop_name):
    items = [item async for item in m.spans_in_generator(3)]
    expected = {
        "function": "spans_in_generator",
        "loop": "trio" if loop_name == "trio" else "asyncio",
        "task": task_name(loop_name),
    }
    assert items == [("async_generator", expected)] * 3

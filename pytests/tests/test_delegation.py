"""Python awaitables awaited by Rust futures inside exported coroutines (PyFuture::new)."""

import asyncio
import contextvars

import anyio
import pytest
import sniffio
import trio

import pyo3_async_pytests as m
from helpers import until

pytestmark = pytest.mark.anyio

VAR = contextvars.ContextVar("VAR", default="unset")


class Custom(Exception):
    pass


def current_task():
    if sniffio.current_async_library() == "trio":
        return trio.lowlevel.current_task()
    return asyncio.current_task()


async def task_of(value):
    await anyio.lowlevel.checkpoint()
    return value, current_task()


async def test_delegated_awaitable_runs_in_the_callers_task():
    value, task = await m.await_py(task_of("inline"))
    assert value == "inline"
    assert task is current_task()


async def test_awaitables_joined_run_as_their_own_tasks():
    results = await m.await_all([task_of(1), task_of(2), task_of(3)])
    assert [value for value, _ in results] == [1, 2, 3]
    assert all(task is not current_task() for _, task in results)


async def test_timer_racing_a_delegated_wait_is_not_held_up():
    """A tokio timer in a `select` with the awaitable: the awaitable runs as a task of its
    own, the timer wins, and dropping the losing branch cancels that task."""
    finished = anyio.Event()
    started = m.Trigger()
    outcome = []

    async def forever():
        started.fire()  # the timer starts now: it cannot cancel a task that never ran
        try:
            await anyio.sleep_forever()
        finally:
            outcome.append("cancelled")
            finished.set()

    assert await m.await_with_timeout(forever(), 0.01, started) == "timeout"
    with anyio.fail_after(10):
        await finished.wait()
    assert outcome == ["cancelled"]


async def test_awaitable_beats_timer():
    value, _ = await m.await_with_timeout(task_of("first"), 30)
    assert value == "first"


async def test_many_awaits_in_sequence_do_not_grow_the_stack():
    async def ready(i):
        return i

    assert await m.await_in_sequence([ready(i) for i in range(20_000)]) == sum(range(20_000))


async def test_our_own_coroutines_delegate_too():
    assert await m.await_py(m.sleep(0.001, "nested")) == "nested"
    assert (await m.await_py(m.await_py(task_of("twice"))))[0] == "twice"
    assert await m.await_py(m.ready(7)) == 7


async def test_errors_keep_type_and_identity():
    error = Custom("through")

    async def fail():
        await anyio.lowlevel.checkpoint()
        raise error

    with pytest.raises(Custom) as raised:
        await m.await_py(fail())
    assert raised.value is error


def test_not_awaitable_is_a_type_error():
    with pytest.raises(TypeError, match="can't be used in 'await' expression"):
        m.await_py(42)


def test_awaited_outside_a_coroutine_is_a_clear_error():
    async def never():
        pass

    coroutine = never()
    with pytest.raises(RuntimeError, match="inside a pyo3_async Coroutine"):
        m.await_outside_coroutine(coroutine)
    coroutine.close()


async def test_cancellation_in_the_middle_of_a_delegated_await():
    seen = []
    parked = anyio.Event()

    async def inner():
        try:
            parked.set()
            await anyio.sleep_forever()
        except BaseException as exc:
            seen.append(type(exc).__name__)
            raise

    async with anyio.create_task_group() as group:
        scope = anyio.CancelScope()

        async def outer():
            with scope:
                await m.await_py(inner())

        group.start_soon(outer)
        await parked.wait()
        scope.cancel()
    assert scope.cancelled_caught
    assert seen == [anyio.get_cancelled_exc_class().__name__]


async def test_asyncio_task_cancel_reaches_the_delegated_awaitable(loop_name):
    if loop_name == "trio":
        pytest.skip("asyncio API")
    seen = []

    async def inner():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError as exc:
            seen.append(exc.args)
            raise

    task = asyncio.create_task(m.await_py(inner()))
    await until(lambda: task._fut_waiter is not None)
    task.cancel("from the test")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [("from the test",)]


async def test_delegated_awaitable_sees_the_callers_context():
    token = VAR.set("caller")
    try:

        async def read():
            await anyio.lowlevel.checkpoint()
            return VAR.get()

        assert await m.await_py(read()) == "caller"
        # Scheduled ones run in a copy of it.
        assert await m.await_all([read(), read()]) == ["caller", "caller"]
    finally:
        VAR.reset(token)


async def test_spawned_from_tokio_onto_the_running_loop():
    value, task = await m.spawn_from_tokio(task_of("spawned"))
    assert value == "spawned"
    assert task is not current_task()


async def test_spawn_with_builds_the_awaitable_on_the_loop_thread():
    import threading

    threads = []

    async def work():
        await anyio.lowlevel.checkpoint()
        return "built here"

    def make():
        threads.append(threading.get_ident())
        return work()

    assert await m.spawn_with_from_tokio(make) == "built here"
    assert threads == [threading.get_ident()]


async def test_spawn_with_reports_failures():
    error = Custom("from make")

    def failing_make():
        raise error

    with pytest.raises(Custom) as raised:
        await m.spawn_with_from_tokio(failing_make)
    assert raised.value is error
    with pytest.raises(TypeError, match="can't be used in 'await' expression"):
        await m.spawn_with_from_tokio(lambda: 42)

    async def fail():
        await anyio.lowlevel.checkpoint()
        raise KeyError("inside")

    with pytest.raises(KeyError):
        await m.spawn_with_from_tokio(fail)

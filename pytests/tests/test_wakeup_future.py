"""The future an asyncio task waits on while a Rust coroutine is parked (src/backend/
wakeup_future.rs): asyncio's future protocol as `Task`, user code holding `task._fut_waiter`
and anyio use it. On asyncio and uvloop; the anyio tests on trio too."""

import asyncio
import contextvars
import sys

import anyio
import pytest

import pyo3_async_pytests as m

from helpers import full_api_only, until

pytestmark = pytest.mark.anyio


def asyncio_only(loop_name):
    if loop_name == "trio":
        pytest.skip("asyncio's future protocol")


async def parked_task():
    """A task whose Rust coroutine is parked, its trigger, and the future it waits on."""
    trigger = m.Trigger()
    task = asyncio.get_running_loop().create_task(trigger.wait())
    await until(lambda: task._fut_waiter is not None)
    return task, trigger, task._fut_waiter


async def test_a_parked_task_waits_on_a_pending_future_of_its_loop(loop_name):
    asyncio_only(loop_name)
    task, trigger, future = await parked_task()
    assert asyncio.isfuture(future)
    assert future.get_loop() is asyncio.get_running_loop()
    # The task took it: it cleared the flag, as for any future it waits on.
    assert future._asyncio_future_blocking is False
    assert not future.done() and not future.cancelled()
    with pytest.raises(asyncio.InvalidStateError):
        future.result()
    assert "pending" in repr(future) and "wait_for=<WakeupFuture pending>" in repr(task)
    trigger.fire()
    # At once on the loop's thread (full API); through the loop's home under the limited API.
    await until(future.done)
    assert not future.cancelled()
    assert future.result() is None and future.exception() is None
    assert future.cancel() is False, "a resolved future cannot be cancelled"
    await task
    assert "finished" in repr(future)


async def test_cancelling_the_task_cancels_its_future_with_the_message(loop_name):
    asyncio_only(loop_name)
    task, _trigger, future = await parked_task()
    task.cancel("stop it")
    assert future.cancelled() and future.done()
    with pytest.raises(asyncio.CancelledError, match="stop it"):
        future.result()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert future.cancel() is False


@full_api_only  # the limited API delivers the wake-up later, through the loop's home
async def test_a_cancel_after_the_wake_up_cancels_the_task_and_not_the_future(loop_name):
    """As for a native coroutine whose future is done but whose task has not run yet: the
    task's next step raises `CancelledError` into the coroutine."""
    asyncio_only(loop_name)
    task, trigger, future = await parked_task()
    trigger.fire()
    assert task.cancel() is True
    assert not future.cancelled()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_more_done_callbacks_run_once_each_in_their_context(loop_name):
    asyncio_only(loop_name)
    task, trigger, future = await parked_task()
    variable = contextvars.ContextVar("variable", default="unset")
    calls = []

    def seen(name):
        return lambda done: calls.append((name, done, variable.get()))

    context = contextvars.copy_context()
    context.run(variable.set, "in context")
    future.add_done_callback(seen("given"), context=context)
    removed = seen("removed")
    future.add_done_callback(removed)
    future.add_done_callback(removed)
    variable.set("current")
    future.add_done_callback(seen("current"))
    assert future.remove_done_callback(removed) == 2
    assert future.remove_done_callback(removed) == 0
    trigger.fire()
    assert calls == [], "callbacks are scheduled, not called"
    await task
    await until(lambda: len(calls) == 2)
    assert calls == [("given", future, "in context"), ("current", future, "current")]
    # Added to a finished future: scheduled at once.
    future.add_done_callback(seen("late"))
    await until(lambda: len(calls) == 3)
    assert calls[2] == ("late", future, "current")
    assert future.remove_done_callback(removed) == 0


def task_maker(task_class):
    """Tasks of asyncio's C `Task` (what loops make), or of its pure-Python twin."""
    loop = asyncio.get_running_loop()
    if task_class == "C":
        return loop.create_task
    return lambda coroutine: asyncio.tasks._PyTask(coroutine, loop=loop)


@pytest.mark.parametrize("task_class", ["C", "Python"])
async def test_interleaved_wake_ups_and_cancellations_each_reach_their_own_task(
    loop_name, task_class
):
    """A C task's wake-up reads a finished stand-in of the future (the same two for every
    task: src/backend/finished_future.rs), a Python task's reads the future itself: either
    way each task resumes with its own future's outcome, whatever the others' were."""
    asyncio_only(loop_name)
    make = task_maker(task_class)
    triggers = [m.Trigger() for _ in range(12)]
    tasks = [make(trigger.wait(i)) for i, trigger in enumerate(triggers)]
    await until(lambda: all(task._fut_waiter is not None for task in tasks))
    for i, (task, trigger) in enumerate(zip(tasks, triggers)):
        if i % 3 == 0:
            trigger.fire()
        elif i % 3 == 1:
            task.cancel()
        else:
            task.cancel(f"message {i}")
    await asyncio.wait(tasks)
    for i, task in enumerate(tasks):
        if i % 3 == 0:
            assert task.result() == i
        else:
            assert task.cancelled()
    # Again, now that the stand-ins have served: they are never changed by what they serve.
    trigger = m.Trigger()
    task = make(trigger.wait("again"))
    await until(lambda: task._fut_waiter is not None)
    trigger.fire()
    assert await task == "again"


@pytest.mark.parametrize("task_class", ["C", "Python"])
async def test_every_cancelled_wait_raises_a_cancelled_error_of_its_own(loop_name, task_class):
    """Cancelled without a message, every coroutine gets a new `CancelledError()`: nothing of
    one task's cancellation (its traceback, its context) rides on another's."""
    asyncio_only(loop_name)
    make = task_maker(task_class)
    tasks = [make(m.Trigger().wait()) for _ in range(3)]
    await until(lambda: all(task._fut_waiter is not None for task in tasks))
    for task in tasks:
        task.cancel()
    errors = []
    for task in tasks:
        with pytest.raises(asyncio.CancelledError) as raised:
            await task
        errors.append(raised.value)
    assert len({id(error) for error in errors}) == len(errors)
    for error in errors:
        assert error.args == ()
        assert error.__context__ is None or isinstance(error.__context__, asyncio.CancelledError)
        assert all(other.__context__ is not error for other in errors)


async def test_the_blocking_flag_is_the_tasks_to_clear(loop_name):
    asyncio_only(loop_name)
    awaiting = m.pending_forever(m.Probe()).__await__()
    future = awaiting.send(None)
    assert future._asyncio_future_blocking is True
    future._asyncio_future_blocking = False
    assert future._asyncio_future_blocking is False
    awaiting.close()


async def test_a_task_of_another_loop_refuses_the_future(loop_name):
    """asyncio's own check: a future yielded to a task of another loop is an error there."""
    asyncio_only(loop_name)
    awaiting = m.pending_forever(m.Probe()).__await__()
    future = awaiting.send(None)

    async def yields_it():
        await YieldOnce(future)

    def run_elsewhere():
        # Another thread: this one runs the test's loop.
        try:
            asyncio.run(yields_it())
        except RuntimeError as error:
            return str(error)

    refused = await anyio.to_thread.run_sync(run_elsewhere)
    awaiting.close()
    assert refused is not None and "attached to a different loop" in refused


class YieldOnce:
    def __init__(self, value):
        self.value = value

    def __await__(self):
        yield self.value


async def test_anyio_sees_a_parked_rust_coroutine_as_blocked(loop_name):
    trigger = m.Trigger()
    async with anyio.create_task_group() as group:
        group.start_soon(trigger.wait)
        await anyio.wait_all_tasks_blocked()
        trigger.fire()


async def test_an_anyio_cancel_scope_cancels_a_parked_rust_coroutine_once(loop_name):
    probe = m.Probe()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(m.pending_forever, probe)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught
    assert probe.dropped
    if loop_name != "trio" and sys.version_info >= (3, 11):
        assert asyncio.current_task().cancelling() == 0

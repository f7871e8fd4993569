"""Rust futures awaited as Python coroutines: results, wake-ups, errors, panics, misuse."""

import asyncio
import collections.abc
import gc
import threading

import anyio
import pytest
import trio
import trio.testing

import pyo3_async_pytests as m
from helpers import full_api_only, until

pytestmark = pytest.mark.anyio


class Custom(Exception):
    pass


async def test_ready_future_returns_value():
    marker = object()
    assert await m.ready(marker) is marker


def test_ready_future_never_touches_an_event_loop():
    # No loop runs here: a ready future completes at the first send, with no backend.
    coroutine = m.ready(41)
    with pytest.raises(StopIteration) as stop:
        coroutine.send(None)
    assert stop.value.value == 41


def test_await_gets_an_iterator_over_the_coroutine():
    # The coroutine itself (under the limited API, moved into the subclass that has `am_send`).
    iterator = m.ready(41).__await__()
    with pytest.raises(StopIteration) as stop:
        next(iterator)
    assert stop.value.value == 41
    iterator = m.ready((1, 2)).__await__()
    with pytest.raises(StopIteration) as stop:
        iterator.send(None)
    assert stop.value.value == (1, 2)
    probe = m.Probe()
    iterator = m.pending_forever(probe).__await__()
    iterator.close()
    assert probe.dropped
    with pytest.raises(RuntimeError, match="cannot reuse"):
        iterator.send(None)


def test_is_a_coroutine():
    coroutine = m.ready(1)
    assert asyncio.iscoroutine(coroutine)
    assert isinstance(coroutine, collections.abc.Coroutine)
    coroutine.close()


async def test_woken_from_tokio_thread():
    assert await m.sleep(0.001, "slept") == "slept"


async def test_woken_from_os_thread():
    assert await m.from_thread("threaded") == "threaded"


async def test_woken_during_poll_resumes_on_next_pass():
    assert await m.yield_now(5) == 6


async def test_woken_from_another_thread_after_parking():
    trigger = m.Trigger()
    async with anyio.create_task_group() as group:
        results = []

        async def wait():
            results.append(await trigger.wait("fired"))

        group.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        await anyio.to_thread.run_sync(trigger.fire_from_thread)
    assert results == ["fired"]


async def test_several_wake_sources_in_one_future():
    first, second = m.Trigger(), m.Trigger()
    async with anyio.create_task_group() as group:
        results = []

        async def wait():
            results.append(await m.both(first, second))

        group.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        first.fire()
        await anyio.wait_all_tasks_blocked()
        assert results == []
        second.fire_from_thread()
    assert results == ["both"]


@full_api_only
async def test_wake_on_loop_thread_is_delivered_directly(loop_name):
    """A wake on the loop's own thread resolves the suspension at once, without the
    thread-safe entry point (which would only act on a later loop pass)."""
    trigger = m.Trigger()
    if loop_name == "trio":
        tasks = []

        async def wait():
            tasks.append(trio.lowlevel.current_task())
            await trigger.wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            (task,) = tasks
            assert task._next_send_fn is None
            trigger.fire()
            assert task._next_send_fn is not None
    else:
        task = asyncio.get_running_loop().create_task(trigger.wait())
        await until(lambda: task._fut_waiter is not None)
        assert not task._fut_waiter.done()
        trigger.fire()
        assert task._fut_waiter.done()
        await task


async def test_many_concurrent_coroutines():
    results = {}

    async def one(i):
        results[i] = await m.sleep(0.001 * (i % 7), i)

    async with anyio.create_task_group() as group:
        for i in range(1000):
            group.start_soon(one, i)
    assert results == {i: i for i in range(1000)}


async def test_thread_storm_completes_exactly_once():
    """Spurious and repeated wakes from 8 threads: the coroutine finishes once, and trio is
    never rescheduled twice for one suspension (which would crash the run)."""
    stash = m.WakerStash()
    async with anyio.create_task_group() as group:
        done = []

        async def wait():
            done.append(await stash.wait(8 * 200))

        group.start_soon(wait)
        await until(lambda: stash.has_waker)
        await anyio.to_thread.run_sync(lambda: stash.wake_from_threads(200, 8))
    assert done == [None]


@pytest.mark.parametrize("suspend", [False, True], ids=["at-once", "after-suspending"])
async def test_error_keeps_type_and_identity(suspend):
    error = Custom("kept")
    with pytest.raises(Custom) as raised:
        await m.fail(error, suspend)
    assert raised.value is error


@pytest.mark.parametrize("suspend", [False, True], ids=["at-once", "after-suspending"])
async def test_panic_becomes_exception_and_loop_survives(suspend):
    # An `Exception`: `except Exception` (a framework's error handling) contains it.
    with pytest.raises(Exception, match="rust says no") as raised:
        await m.panic("rust says no", suspend)
    assert type(raised.value) is m.PanicError
    assert raised.value.args == ("rust says no",)
    assert await m.sleep(0.001, "still running") == "still running"


@pytest.mark.parametrize("suspend", [False, True], ids=["at-once", "after-suspending"])
async def test_panics_raise_pyo3s_panic_exception_when_asked(suspend):
    m.use_pyo3_panics(True)
    try:
        with pytest.raises(BaseException, match="rust says no") as raised:
            await m.panic("rust says no", suspend)
    finally:
        m.use_pyo3_panics(False)
    assert type(raised.value).__name__ == "PanicException"
    assert not isinstance(raised.value, Exception)


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
async def test_a_panicking_destructor_never_escapes():
    # Finished, cancelled, closed and collected unawaited: each drops the future, whose
    # destructor panics; the panic stays in Rust and everything else behaves as usual.
    assert await m.panics_on_drop(True) == 7
    with anyio.CancelScope() as scope:
        scope.cancel()
        await m.panics_on_drop(False)
    assert scope.cancelled_caught
    closed = m.panics_on_drop(False)
    closed.close()
    with pytest.raises(RuntimeError, match="cannot reuse"):
        await closed
    m.panics_on_drop(False)
    gc.collect()
    assert await m.sleep(0.001, "still running") == "still running"


async def test_awaiting_twice_is_an_error():
    coroutine = m.ready(1)
    assert await coroutine == 1
    with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
        await coroutine


async def test_awaiting_while_being_awaited_is_an_error():
    coroutine = m.sleep(0.001)
    coroutine.__await__()
    with pytest.raises(RuntimeError, match="being awaited already"):
        coroutine.__await__()
    coroutine.close()


async def test_awaiting_a_coroutine_started_by_hand_is_an_error():
    coroutine = m.pending_forever(m.Probe())  # nothing will wake it, unlike a timer
    coroutine.send(None)
    with pytest.raises(RuntimeError, match="being awaited already"):
        coroutine.__await__()
    coroutine.close()
    with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
        coroutine.__await__()


def test_sending_a_value_to_a_new_coroutine_is_an_error():
    coroutine = m.ready(1)
    with pytest.raises(TypeError, match="non-None value"):
        coroutine.send(1)
    # Refused before starting: it can still be awaited.
    assert asyncio.run(_await(coroutine)) == 1


async def _await(awaitable):
    return await awaitable


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_throw_forms():
    with pytest.raises(KeyError):
        m.ready(1).throw(KeyError)
    with pytest.raises(KeyError, match="k"):
        m.ready(1).throw(KeyError, "k")
    error = Custom()
    with pytest.raises(Custom) as raised:
        m.ready(1).throw(error)
    assert raised.value is error
    with pytest.raises(TypeError, match="deriving from BaseException"):
        m.ready(1).throw(42)
    with pytest.raises(TypeError, match="separate value"):
        m.ready(1).throw(error, "value")


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_close_and_garbage_collection_drop_the_future():
    probe = m.Probe()
    coroutine = m.pending_forever(probe)
    coroutine.close()
    assert probe.dropped
    with pytest.raises(RuntimeError, match="cannot reuse"):
        coroutine.send(None)

    probe = m.Probe()
    coroutine = m.pending_forever(probe)
    del coroutine
    gc.collect()
    assert probe.dropped


async def test_explicit_backend(loop_name):
    name = "trio" if loop_name == "trio" else "asyncio"
    assert await m.sleep(0.001, "explicit", backend=name) == "explicit"
    other = "asyncio" if name == "trio" else "trio"
    with pytest.raises(RuntimeError):  # never ready, so it asks for its loop
        await m.pending_forever(m.Probe(), backend=other)


def test_no_event_loop_is_a_clear_error():
    # Never ready: a short timer may have fired before the first send, which then completes
    # without asking for a loop (a ready future needs none).
    coroutine = m.pending_forever(m.Probe())
    with pytest.raises(Exception, match="unknown async library|no running event loop"):
        coroutine.send(None)
    with pytest.raises(RuntimeError, match="cannot reuse"):
        coroutine.send(None)


async def test_asyncio_interoperability(loop_name):
    if loop_name == "trio":
        pytest.skip("asyncio APIs")
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(m.sleep(0.001, "task"))
    assert await task == "task"
    assert await asyncio.gather(m.ready(1), m.sleep(0.001, 2), m.from_thread(3)) == [1, 2, 3]
    assert await asyncio.wait_for(m.sleep(0.001, "waited"), 10) == "waited"

    def from_thread():
        return asyncio.run_coroutine_threadsafe(m.sleep(0.001, "threadsafe"), loop).result()

    assert await anyio.to_thread.run_sync(from_thread) == "threadsafe"


async def test_task_name_and_repr_do_not_fail(loop_name):
    if loop_name == "trio":
        pytest.skip("asyncio repr")
    task = asyncio.create_task(m.sleep(0.001))
    assert "Task" in repr(task)
    await task


def test_other_threads_can_drive_their_own_loops():
    results = []

    def run():
        results.append(asyncio.run(m.sleep(0.001, threading.get_ident())))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == sorted(thread.ident for thread in threads)

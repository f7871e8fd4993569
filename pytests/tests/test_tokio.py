"""The `tokio` feature, on asyncio, uvloop and trio: tokio timers and `tokio::net` in futures
the Python loop drives (no spawn, no thread hop), and cancellation that drops everything the
future owns; `pyo3_async::tokio::spawn`, whose handle aborts its task."""

import threading

import anyio
import pytest

import pyo3_async_pytests as t
from helpers import until_threads

pytestmark = pytest.mark.anyio


async def test_a_tokio_timer_in_an_exported_function(loop_name):
    assert await t.tokio_sleep(0.001, "slept") == "slept"


async def test_a_tokio_net_round_trip(loop_name):
    payload = bytes(range(256)) * 64
    assert await t.tokio_echo(payload) == payload


async def test_tokio_timers_in_a_generator(loop_name):
    assert [i async for i in t.tokio_interval(5)] == [0, 1, 2, 3, 4]


async def test_cancelling_the_python_side_drops_the_future_and_its_timers(loop_name):
    alive = t.tokio_alive()
    with anyio.move_on_after(0.02) as scope:
        await t.tokio_ticker()
    assert scope.cancelled_caught
    # Dropped on the loop's thread during the cancellation itself: nothing left on tokio.
    assert t.tokio_alive() == alive
    ticks = t.tokio_ticks()
    await anyio.sleep(0.01)
    assert t.tokio_ticks() == ticks, "a timer of the cancelled future still ticks"


async def test_a_cancelled_future_is_dropped_inside_the_runtime(loop_name):
    # Destructors that spawn their cleanup on tokio (sqlx's pooled connections) need the
    # runtime's context when Python cancels the future, as when it completes.
    before = t.cleaned_up()
    for _ in range(5):
        await t.pooled_query(True)
    for _ in range(5):
        with anyio.move_on_after(0.005) as scope:
            await t.pooled_query(False)
        assert scope.cancelled_caught
    rows = t.pooled_rows()
    with anyio.move_on_after(0.005):
        await rows.__anext__()
    await rows.aclose()
    await until_threads(lambda: t.cleaned_up() == before + 11)


async def test_cancelling_the_python_side_aborts_a_spawned_task(loop_name):
    alive = t.tokio_alive()
    with anyio.move_on_after(0.02) as scope:
        await t.spawned_ticker()
    assert scope.cancelled_caught
    # The abort is carried out on a tokio worker, soon.
    await until_threads(lambda: t.tokio_alive() == alive)


async def test_a_panic_in_a_spawned_task_is_a_panic_error(loop_name):
    with pytest.raises(t.PanicError, match="boom on a tokio worker"):
        await t.spawned_panic()


async def test_threads_keep_python_thread_states_only_when_asked(loop_name):
    # What one attach stores in a `threading.local` is there in the next only if both ran
    # with the same thread state; a released state takes it with it. The default runtime's
    # threads keep none: nothing one task stores there reaches the next.
    local = threading.local()
    explicit, on_worker, on_blocking_thread = await t.thread_states_kept(local)
    assert explicit == (True, True)
    assert not on_worker, "a runtime worker kept its thread state"
    assert not on_blocking_thread, "a blocking thread kept its thread state"

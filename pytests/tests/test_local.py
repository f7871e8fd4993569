"""Coroutines over `!Send` Rust futures: awaited on the thread that made them, refused (with a
clear error) on any other, and never dropped on another thread (leaked there instead)."""

import asyncio
import threading

import pytest

import pyo3_async_pytests as m

LOCAL = [m.local_count, m.local_count_by_hand]


@pytest.mark.anyio
@pytest.mark.parametrize("local", LOCAL, ids=lambda f: f.__name__)
async def test_a_local_coroutine_runs_on_its_thread(local):
    dropped = m.local_dropped()
    assert await local(3) == 3
    assert m.local_dropped() == dropped + 1


def in_thread(function):
    """`function()`'s result (or exception) on a new thread."""
    outcome = {}

    def run():
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.mark.parametrize("local", LOCAL, ids=lambda f: f.__name__)
def test_awaiting_a_local_coroutine_on_another_thread_is_refused(local):
    coroutine = local(3)  # made on this thread

    async def main():
        return await coroutine

    with pytest.raises(RuntimeError, match="not Send: it can only be awaited on the thread"):
        in_thread(lambda: asyncio.run(main()))


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_a_local_coroutine_dropped_on_another_thread_leaks_its_future():
    # `local_count_by_hand` makes its `!Send` state at once (the macro's, at the first poll).
    local = m.local_count_by_hand
    dropped = m.local_dropped()
    holder = [local(3)]
    in_thread(holder.clear)  # the last reference goes there
    assert m.local_dropped() == dropped
    # On its own thread, the future is dropped.
    local(3).close()
    assert m.local_dropped() == dropped + 1

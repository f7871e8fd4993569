"""The delegation rule and streams you can rely on (every loop): one task per awaitable,
every run; nothing held up; contexts that do not leak; PEP 479; contained destructors."""

import contextvars
import gc

import anyio
import anyio.lowlevel
import pytest

import pyo3_async_pytests as t

from helpers import sized, until_threads

REQUEST_ID = contextvars.ContextVar("REQUEST_ID", default="unset")


@pytest.mark.anyio
async def test_a_lone_pyfuture_always_runs_in_the_callers_task(loop_name):
    # Cross-thread wake-ups right before each await used to make some of these separate tasks
    # (their contextvars then lost to the caller).
    async def set_id(value):
        await anyio.lowlevel.checkpoint()
        REQUEST_ID.set(value)
        return value

    for i in range(sized(2000, 100_000)):
        await t.sleep(0)  # a wake-up from a tokio thread
        assert await t.await_py(set_id(i)) == i
        assert REQUEST_ID.get() == i, f"await {i} ran in another task"


@pytest.mark.anyio
async def test_a_timer_polled_earlier_is_not_held_up_by_a_python_await(loop_name):
    never = anyio.Event()
    assert await t.race_with_earlier_timer(never.wait(), 0.01) == "timer"


@pytest.mark.anyio
async def test_a_generator_step_never_leaves_its_task(loop_name):
    # A cancel scope entered and left inside each step, with checkpoints: trio kills the run
    # and anyio raises if a step is finished by another task than the one that started it.
    async def scoped_numbers(n):
        for i in range(n):
            with anyio.CancelScope():
                if i % 3 == 0:
                    await anyio.sleep(0)
                await anyio.lowlevel.checkpoint()
            yield i

    n = sized(3000, 100_000)
    assert await t.collect_async_iter(scoped_numbers(n), 16) == list(range(n))


@pytest.mark.anyio
async def test_dropping_a_stream_mid_step_lets_aclose_run_to_its_end(loop_name):
    closed = []
    stepping = anyio.Event()

    async def slow_cleanup():
        try:
            yield 1
            stepping.set()
            await anyio.sleep(3600)  # the step the drop cancels
            yield 2
        finally:
            # Asynchronous cleanup (an HTTP connection released, say) must run to its end.
            await anyio.lowlevel.checkpoint()
            await anyio.sleep(0)
            closed.append("cleaned")

    assert await t.take_async_iter(slow_cleanup(), 1) == [1]
    await until_threads(lambda: closed == ["cleaned"])


@pytest.mark.anyio
async def test_drops_racing_pulls_always_finish_the_cleanup(loop_name):
    # The consumer drops the stream after a varying number of items, racing the pump's next
    # pull on the loop: every generator's cleanup still runs to its end, exactly once.
    closed = []

    async def numbers(index):
        try:
            i = 0
            while True:
                await anyio.lowlevel.checkpoint()
                yield i
                i += 1
        finally:
            await anyio.lowlevel.checkpoint()
            closed.append(index)

    rounds = sized(200, 10_000)
    for index in range(rounds):
        # At least one item: a generator that never started has no cleanup to run.
        wanted = 1 + index % 7
        assert await t.take_async_iter(numbers(index), wanted) == list(range(wanted))
    await until_threads(lambda: len(closed) == rounds)
    assert sorted(closed) == list(range(rounds))


@pytest.mark.anyio
async def test_spawn_with_runs_each_job_in_a_fresh_context(loop_name):
    REQUEST_ID.set("caller")

    async def read_and_set():
        seen = REQUEST_ID.get()
        REQUEST_ID.set("set by the job")
        return seen

    # No context chosen: a new, empty one per job.
    assert await t.spawn_with_context(read_and_set, False) == "unset"
    assert await t.spawn_with_context(read_and_set, False) == "unset"
    # The caller's context, captured on the loop thread and carried across the tokio hop:
    # each job sees it as it was, and what a job sets stays in its own copy.
    assert await t.spawn_with_context(read_and_set, True) == "caller"
    assert await t.spawn_with_context(read_and_set, True) == "caller"
    assert REQUEST_ID.get() == "caller"


@pytest.mark.anyio
async def test_stop_iteration_from_a_future_is_a_runtime_error(loop_name):
    with pytest.raises(RuntimeError, match="StopIteration") as raised:
        await t.raise_stop_iteration(5)
    assert isinstance(raised.value.__cause__, StopIteration)
    assert raised.value.__cause__.value == 5


@pytest.mark.anyio
@pytest.mark.parametrize("sync", [False, True])
async def test_stop_errors_from_a_stream_are_runtime_errors(loop_name, sync):
    items = []
    with pytest.raises(RuntimeError, match="StopIteration" if sync else "StopAsyncIteration") as raised:
        async for item in t.stream_raising_stop(sync):
            items.append(item)
    assert items == [1]
    assert isinstance(raised.value.__cause__, StopIteration if sync else StopAsyncIteration)


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["ends", "aclose", "collected"])
async def test_a_stream_whose_destructor_panics_is_contained(loop_name, how):
    unraisable = []
    import sys

    previous, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        if how == "ends":
            assert [item async for item in t.stream_panics_on_drop(3, True)] == [0, 1, 2]
        elif how == "aclose":
            generator = t.stream_panics_on_drop(3, False)
            assert await generator.__anext__() == 0
            await generator.aclose()
        else:
            generator = t.stream_panics_on_drop(3, False)
            assert await generator.__anext__() == 0
            del generator
            gc.collect()
    finally:
        sys.unraisablehook = previous
    assert unraisable == []


@pytest.mark.anyio
async def test_a_cancellation_gets_no_frame_of_the_rust_function(loop_name):
    import traceback

    def rust_entries(exc):
        return [entry for entry in traceback.extract_tb(exc.__traceback__) if entry.filename.endswith(".rs")]

    seen = []
    with anyio.move_on_after(0.01):
        try:
            await t.macro_pending(t.Probe())
        except BaseException as exc:
            seen.append(rust_entries(exc))
            raise
    # A cancellation passing through is not the Rust function's error (and building frames
    # for it made cancelling slow); the function's own errors do get an entry naming it.
    assert seen == [[]]
    with pytest.raises(KeyError) as raised:
        await t.macro_fail(KeyError("k"))
    assert [entry.name for entry in rust_entries(raised.value)] == ["macro_fail"]

"""asyncio's newer machinery with Rust coroutines (src/machinery.rs and the rest of the module):
eager tasks (3.12+: a task's first step runs inside `create_task`), one `asyncio.Runner` reused
for several runs (3.11+), and the task bookkeeping (kept per thread since 3.14) as Python code
inside a Rust poll sees it. On asyncio (and uvloop where it supports the feature)."""

import asyncio
import sys

import pytest

import pyo3_async_pytests as m


def new_loop(loop_name):
    if loop_name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(loop_name, main):
    loop = new_loop(loop_name)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


LOOPS = pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager_task_factory is 3.12's")
def test_eager_tasks_run_rust_coroutines_delegation_and_spawn():
    # asyncio's own loop: uvloop's support of eager tasks varies with its version and
    # Python's (none on 3.14, a `TypeError` from its `create_task` on 3.13).
    loop_name = "asyncio"

    async def work():
        await asyncio.sleep(0)
        return "spawned"

    async def native():
        return 5

    async def main():
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)
        # As a native coroutine does, a ready Rust future finishes inside `create_task`.
        assert asyncio.create_task(native()).done()
        ready = asyncio.create_task(m.ready(5))
        assert ready.done()
        assert await ready == 5
        trigger = m.Trigger()
        waiting = asyncio.create_task(trigger.wait("fired"))
        assert not waiting.done()
        trigger.fire()
        assert await waiting == "fired"
        delegated = asyncio.create_task(m.await_py(asyncio.sleep(0, "delegated")))
        assert await delegated == "delegated"
        # Tasks the bridge starts for Rust start eagerly too, on the loop's thread.
        assert await asyncio.create_task(m.spawn_with_from_tokio(work)) == "spawned"
        assert await m.spawn_from_tokio(work()) == "spawned"
        assert await asyncio.gather(*(m.ready(i) for i in range(3))) == [0, 1, 2]
        return "ok"

    assert run(loop_name, main) == "ok"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is 3.11's")
@LOOPS
def test_one_runner_for_several_runs(loop_name):
    async def main(i):
        assert await m.macro_sleep(0.001, i) == i
        assert [item async for item in m.macro_count(2)] == [0, 1]
        assert await m.await_py(asyncio.sleep(0, i)) == i
        return await m.tokio_sleep(0.001, i)

    factory = (lambda: new_loop(loop_name)) if loop_name == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        # The same loop, its home kept from run to run.
        assert [runner.run(main(i)) for i in range(3)] == [0, 1, 2]
        # A Rust coroutine as the run's main coroutine.
        assert runner.run(m.macro_sleep(0.001, "main")) == "main"


@LOOPS
def test_task_bookkeeping_seen_from_inside_a_rust_poll(loop_name):
    async def main():
        me = asyncio.current_task()
        (first_task, first_all), (second_task, second_all) = await m.call_during_poll(
            lambda: (asyncio.current_task(), asyncio.all_tasks())
        )
        # Inside the poll, before and after a suspension, the awaiting task is current.
        assert first_task is me and second_task is me
        assert me in first_all and me in second_all
        # A task running a Rust coroutine is current inside its polls too.
        task = asyncio.create_task(
            m.call_during_poll(lambda: asyncio.current_task())
        )
        seen = await task
        assert seen == (task, task)
        return "ok"

    assert run(loop_name, main) == "ok"

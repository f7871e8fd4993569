"""A program's whole life with tokio (src/lifetime.rs): runtimes a library names, tasks aborted
under their awaiter, `init`'s errors, the owned runtime's shutdown at exit, and forked
children. Exit and fork run in subprocesses, bounded in time."""

import asyncio
import sys
import threading
import time

import pytest

import pyo3_async_pytests as m

from helpers import run_script

RUNS = {
    "asyncio": "import asyncio; run = lambda main: asyncio.run(main())",
    "uvloop": "import uvloop; run = lambda main: uvloop.run(main())",
    "trio": "import trio; run = lambda main: trio.run(main)",
}


@pytest.mark.anyio
async def test_a_function_names_the_runtime_it_is_polled_in():
    assert await m.io_runtime_thread() == "pytests-io"
    assert await m.compute_runtime_thread() == "pytests-compute"


@pytest.mark.anyio
async def test_an_aborted_task_raises_task_aborted_not_a_cancellation(loop_name):
    with pytest.raises(m.TaskAbortedError) as raised:
        await m.aborted_task()
    assert not isinstance(raised.value, asyncio.CancelledError)
    assert isinstance(raised.value, Exception)
    if loop_name != "trio" and sys.version_info >= (3, 11):
        # The awaiting task was not cancelled, and asyncio was not told it was.
        assert asyncio.current_task().cancelling() == 0
    assert await m.spawned_value("still works") == "still works"


def test_init_refuses_a_second_runtime_with_a_runtime_error():
    out = run_script(
        """
        import pyo3_async_pytests as t
        t.init_runtime()
        try:
            t.init_runtime()
        except RuntimeError as err:
            print("refused:", err)
        """
    )
    assert "refused: the pyo3-async tokio runtime is already initialised" in out


def test_init_reports_a_runtime_that_cannot_be_built():
    # No file descriptor left for the runtime's driver: an error, not a panic.
    out = run_script(
        """
        import os, resource
        import pyo3_async_pytests as t
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
        taken = []
        try:
            while True:
                taken.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        try:
            t.init_runtime()
        except RuntimeError as err:
            print("error:", err)
        """
    )
    assert "error: cannot build the tokio runtime" in out


@pytest.mark.parametrize("loop_name", list(RUNS))
def test_exit_drops_the_runtimes_tasks_while_python_is_still_there(loop_name):
    out = run_script(
        f"""
        {RUNS[loop_name]}
        import pyo3_async_pytests as t

        async def main():
            assert await t.spawned_value(1) == 1
            t.leave_task_at_exit(lambda message: print(message, flush=True))

        run(main)
        print("exiting", flush=True)
        """
    )
    assert out.split() == ["exiting", "task", "dropped", "at", "exit"]


@pytest.mark.parametrize("loop_name", list(RUNS))
def test_exit_waits_for_blocking_tasks_only_as_long_as_told(loop_name):
    started = time.monotonic()
    run_script(
        f"""
        {RUNS[loop_name]}
        import pyo3_async_pytests as t

        async def main():
            assert await t.spawned_value(1) == 1
            t.leave_blocking_task_at_exit(30.0, 0.1)

        run(main)
        """
    )
    assert time.monotonic() - started < 15


FORK = """
    import os, signal, sys, time, traceback
    {run}
    import pyo3_async_pytests as t

    async def use_the_bridge():
        assert await t.tokio_sleep(0.001, "slept") == "slept"
        assert await t.spawned_value("spawned") == "spawned"
        assert [item async for item in t.tokio_interval(3)] == [0, 1, 2]

    if {before}:
        run(use_the_bridge)
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)  # a hung child ends, and fails the test
        try:
            run(use_the_bridge)
            run(use_the_bridge)
        except BaseException:
            traceback.print_exc()
            os._exit(3)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print("child", os.waitstatus_to_exitcode(status))
    run(use_the_bridge)
    print("parent ok")
"""


@pytest.mark.parametrize("before", [True, False], ids=["used-before-fork", "only-after"])
@pytest.mark.parametrize("loop_name", list(RUNS))
def test_a_forked_child_uses_the_bridge_with_a_runtime_of_its_own(loop_name, before):
    out = run_script(FORK.format(run=RUNS[loop_name], before=before))
    assert out.split() == ["child", "0", "parent", "ok"]


@pytest.mark.parametrize("loop_name", list(RUNS))
def test_a_child_forked_while_a_thread_is_inside_the_exit_guard_exits_at_once(loop_name):
    out = run_script(
        f"""
        import os, time
        {RUNS[loop_name]}
        import pyo3_async_pytests as t

        async def main():
            assert await t.tokio_sleep(0.001, 1) == 1

        run(main)  # installs the exit guard
        latch = t.Latch()
        t.hold_exit_guard(latch, 30.0)
        latch.wait_blocked()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            run(main)
            raise SystemExit(0)  # a normal exit: atexit runs, the guard waits for no ghost
        _, status = os.waitpid(pid, 0)
        # The ghost of the other thread's guard would be waited for up to the exit's 5 s.
        print("child", os.waitstatus_to_exitcode(status), time.monotonic() - started < 4.5)
        latch.set()
        """
    )
    assert out.split() == ["child", "0", "True"]


def test_block_on_waits_with_the_interpreter_released():
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(None)
            time.sleep(0.001)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        before = len(ticks)
        assert m.sync_sleep(0.2, "value") == "value"
        assert len(ticks) > before, "another Python thread ran meanwhile"
    finally:
        stop.set()
        ticker.join()


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_block_on_waits_for_python_work_on_a_loop_in_another_thread(loop_name):
    if loop_name == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        assert m.sync_await_on(loop, asyncio.sleep(0.01, "done")) == "done"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


@pytest.mark.anyio
async def test_block_on_refuses_to_block_a_running_loop():
    with pytest.raises(RuntimeError, match="running event loop"):
        m.sync_sleep(0.01, 1)


CTRL_C = """
    import os, signal, threading, time
    import pyo3_async_pytests as t

    sent = []

    def interrupt():
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    {start}
    try:
        {call}
    except KeyboardInterrupt:
        print("interrupted", time.monotonic() - sent[0], flush=True)
"""


def test_ctrl_c_interrupts_block_on_and_drops_the_future():
    out = run_script(
        CTRL_C.format(
            start="threading.Timer(0.2, interrupt).start()",
            call="t.sync_wait_forever(lambda m: print(m, flush=True))",
        )
    )
    lines = out.splitlines()
    assert lines[0] == "future dropped"
    assert lines[1].startswith("interrupted")
    # The wait stops every 50 ms to run signal handlers: far below a second even on a loaded
    # machine (the bound only says it did not hang).
    assert float(lines[1].split()[1]) < 1.0


def test_ctrl_c_interrupts_a_loop_threads_block_on_and_cancels_the_task():
    # The task itself sends the signal once it runs: the main thread then waits in `block_on`
    # (a timer could fire earlier, while a slow machine still imports asyncio).
    out = run_script(
        CTRL_C.format(
            start="import asyncio",
            call="""
        async def forever():
            interrupt()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                print("task cancelled", flush=True)
                raise

        t.loop_thread_block_on(forever())"""
        )
    )
    lines = out.splitlines()
    assert "task cancelled" in lines
    assert any(line.startswith("interrupted") for line in lines)


# ---- The attack's findings (issue 25): programs that never meet an event loop, fork hooks
# that run before ours, exit with polls and drops in flight. ----


def test_a_program_without_a_loop_forks_a_child_with_a_runtime_of_its_own():
    out = run_script(
        """
        import os, signal
        import pyo3_async_pytests as t

        print("parent", t.sync_sleep(0.01, 1), flush=True)
        pid = os.fork()
        if pid == 0:
            signal.alarm(20)  # a hung child ends, and fails the test
            print("child", t.sync_sleep(0.01, 2), flush=True)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("status", os.waitstatus_to_exitcode(status))
        """
    )
    assert out.split() == ["parent", "1", "child", "2", "status", "0"]


def test_a_program_without_a_loop_shuts_the_runtime_down_at_exit():
    out = run_script(
        """
        import pyo3_async_pytests as t

        print("parent", t.sync_sleep(0.01, 1), flush=True)
        t.leave_task_at_exit(lambda message: print(message, flush=True))
        print("exiting", flush=True)
        """
    )
    assert out.split() == ["parent", "1", "exiting", "task", "dropped", "at", "exit"]


@pytest.mark.parametrize("loop_name", list(RUNS))
def test_a_fork_hook_registered_before_the_bridges_sees_the_childs_state(loop_name):
    # CPython runs `after_in_child` hooks in registration order: this one runs before any the
    # bridge could register, and must already get the child's runtime.
    out = run_script(
        f"""
        import os, signal
        {RUNS[loop_name]}
        import pyo3_async_pytests as t

        def in_child():
            signal.alarm(20)
            print("hook", t.sync_sleep(0.01, 2), flush=True)

        os.register_at_fork(after_in_child=in_child)

        async def main():
            assert await t.tokio_sleep(0.001, 1) == 1

        run(main)
        pid = os.fork()
        if pid == 0:
            run(main)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("status", os.waitstatus_to_exitcode(status))
        """
    )
    assert out.split() == ["hook", "2", "status", "0"]


def test_exit_that_does_not_wait_refuses_late_drops_instead_of_crashing():
    # A timeout of 0: the runtime's workers drop 200 tasks while the interpreter ends. Their
    # destructors attach through `attach_unless_exiting`: each either runs or is refused.
    for _ in range(5):
        out = run_script(
            """
            import asyncio
            import pyo3_async_pytests as t

            async def main():
                assert await t.spawned_value(1) == 1

            asyncio.run(main())
            t.leave_blocking_task_at_exit(0.0, 0.0)
            for _ in range(200):
                t.leave_task_at_exit(lambda message: print(message, flush=True))
            print("exiting", flush=True)
            """
        )
        assert out.splitlines()[0] == "exiting"


def test_exit_waits_for_a_long_poll_inside_the_exit_guard():
    # The poll calls Python for longer than the shutdown's timeout (1 s): exit waits for it at
    # the guard rather than finalising under it.
    out = run_script(
        """
        import asyncio
        import pyo3_async_pytests as t

        async def main():
            assert await t.spawned_value(1) == 1

        asyncio.run(main())
        # The task looks `time.sleep` up when it runs: this one says it has started, so
        # exit begins with the task inside the guard, however late its thread runs.
        import threading
        import time
        entered = threading.Event()
        sleep = time.sleep

        def sleep_entered(seconds):
            entered.set()
            sleep(seconds)

        time.sleep = sleep_entered
        t.python_call_in_a_task_at_exit(lambda message: print(message, flush=True), 1.3)
        assert entered.wait(60)
        print("exiting", flush=True)
        """
    )
    assert out.split() == ["exiting", "slept"]


def test_a_loop_factory_that_fails_leaves_no_coroutine_behind():
    out = run_script(
        """
        import warnings
        warnings.simplefilter("error")
        import pyo3_async_pytests as t

        def broken():
            raise OSError("no loop today")

        try:
            t.run_with_loop_factory(broken)
        except OSError as err:
            print("raised", err)
        """
    )
    assert out.strip() == "raised no loop today"


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop", "trio"])
def test_run_works_on_the_main_thread_in_a_thread_and_at_exit(loop_name):
    # Before 3.13, `run` refuses uvloop on a thread that uvloop takes for the main thread and
    # CPython does not (tests/uvloop_main_thread.rs). A Python program's main thread is both,
    # even in `atexit`, after `threading` counts it as stopped; a `threading.Thread` neither.
    out = run_script(
        f"""
        import atexit, threading
        import pyo3_async_pytests as t

        print("main", t.run_seven({loop_name!r}), flush=True)
        results = []
        thread = threading.Thread(target=lambda: results.append(t.run_seven({loop_name!r})))
        thread.start()
        thread.join()
        print("thread", *results, flush=True)
        atexit.register(lambda: print("atexit", t.run_seven({loop_name!r}), flush=True))
        """
    )
    assert out.split() == ["main", "7", "thread", "7", "atexit", "7"]

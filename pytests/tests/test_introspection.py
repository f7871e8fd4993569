"""What Python's debugging tools see of a Rust coroutine (src/native.rs): `cr_frame`, `cr_code`,
`cr_await`, `cr_running`, `cr_suspended`, and through them `inspect.getcoroutinestate`,
`Task.get_stack()`/`print_stack()`, 3.14's `asyncio.capture_call_graph()` and trio's
`Task.iter_await_frames()`; names and reprs of generators."""

import asyncio
import contextlib
import importlib
import inspect
import io
import subprocess
import sys
import textwrap

import anyio
import pytest
import trio
import trio.testing

import pyo3_async_pytests as m
from helpers import ABI3, until

NATIVE_RS = "native.rs"


def is_delegate_to(frame):
    code = frame.f_code
    return code.co_name == "delegate_to" and code.co_filename.endswith(NATIVE_RS)


async def leaf(event):
    await event.wait()


@contextlib.asynccontextmanager
async def parked(loop_name):
    """A task running `delegate_to(leaf(event))`, waiting in `leaf`: (task, coroutine, event).
    Started by the loop's own API, so that the task runs the Rust coroutine itself."""
    event = anyio.Event()
    if loop_name == "trio":
        async with trio.open_nursery() as nursery:
            nursery.start_soon(m.delegate_to, leaf(event))
            await trio.testing.wait_all_tasks_blocked()
            (task,) = nursery.child_tasks
            yield task, task.coro, event
            event.set()
    else:
        task = asyncio.ensure_future(m.delegate_to(leaf(event)))
        await until(lambda: task._fut_waiter is not None)
        yield task, task.get_coro(), event
        event.set()
        await task


@pytest.mark.anyio
async def test_a_suspended_rust_coroutine_shows_its_function_and_what_it_awaits(loop_name):
    async with parked(loop_name) as (task, coroutine, event):
        if loop_name == "trio":
            # trio wraps a coroutine without a frame at spawn time (see
            # `test_trio_keeps_wrapping_rust_coroutines_so_ctrl_c_interrupts_python_code`).
            assert coroutine.cr_code.co_name == "python_wrapper"
            coroutine = coroutine.cr_await
        # What `await` got from it: the coroutine itself (under abi3, moved into the subclass
        # with `am_send`, of the same name).
        assert type(coroutine).__name__ == "Coroutine"
        assert isinstance(coroutine, m.Coroutine)
        assert is_delegate_to(coroutine.cr_frame)
        assert coroutine.cr_frame is coroutine.cr_frame, "one frame per coroutine"
        assert coroutine.cr_code is coroutine.cr_frame.f_code
        assert coroutine.cr_frame.f_lineno == coroutine.cr_code.co_firstlineno > 1
        # It delegates to `leaf(event)`: the very coroutine, whose frame continues the chain.
        assert coroutine.cr_await.cr_code is leaf.__code__
        assert (coroutine.cr_running, coroutine.cr_suspended) == (False, True)
        assert coroutine.cr_origin is None
        assert inspect.getcoroutinestate(coroutine) == inspect.CORO_SUSPENDED
        assert coroutine.cr_state == inspect.CORO_SUSPENDED
    assert coroutine.cr_frame is None, "a finished coroutine has no frame, as a native one"
    assert coroutine.cr_await is None
    assert coroutine.cr_code.co_name == "delegate_to"
    assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED


def test_a_coroutine_has_a_frame_from_its_first_send_until_it_finishes():
    coroutine = m.parks_forever()
    assert coroutine.cr_frame is None, "not before the first send (trio must wrap it)"
    assert coroutine.cr_code.co_name == "parks_forever"
    assert (coroutine.cr_running, coroutine.cr_suspended, coroutine.cr_await) == (False, False, None)
    # The documented gap: no frame yet reads as closed, until 3.15's `inspect`, which reads
    # `cr_state`.
    assert coroutine.cr_state == inspect.CORO_CREATED
    expected = inspect.CORO_CREATED if sys.version_info >= (3, 15) else inspect.CORO_CLOSED
    assert inspect.getcoroutinestate(coroutine) == expected
    with pytest.raises(RuntimeError):
        coroutine.send(None)  # suspends: outside any loop, it cannot
    coroutine = m.echo(1)
    coroutine.close()
    assert coroutine.cr_frame is None


def test_trio_keeps_wrapping_rust_coroutines_so_ctrl_c_interrupts_python_code():
    # A Rust coroutine delegating to CPU-bound Python code, spawned straight into a nursery:
    # SIGINT must interrupt the Python code at once (trio's wrapper frame is live and marks
    # the task's code unprotected), not wait for a checkpoint that never comes.
    script = textwrap.dedent(
        '''
        import os, signal, threading, time
        import trio
        import pyo3_async_pytests as m

        started = threading.Event()

        async def busy():
            started.set()
            while True:
                pass

        async def main():
            threading.Thread(target=lambda: (started.wait(), os.kill(os.getpid(), signal.SIGINT))).start()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(m.delegate_to, busy())

        try:
            trio.run(main)
        except BaseException as err:
            print("interrupted" if "KeyboardInterrupt" in repr(err) else repr(err))
        '''
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "interrupted", done.stderr


@pytest.mark.anyio
async def test_cr_running_is_true_inside_its_own_poll():
    seen = []
    coroutine = m.call_during_poll(lambda: seen.append((coroutine.cr_running, coroutine.cr_frame)))
    await coroutine
    (running, frame), (running_again, _) = seen
    assert running and running_again
    assert frame.f_code.co_name == "call_during_poll"


@pytest.mark.anyio
async def test_task_get_stack_and_print_stack_name_the_rust_function(loop_name):
    if loop_name == "trio":
        pytest.skip("get_stack and print_stack are asyncio's")
    async with parked(loop_name) as (task, coroutine, event):
        (frame,) = task.get_stack()
        assert is_delegate_to(frame)
        printed = io.StringIO()
        task.print_stack(file=printed)
        assert NATIVE_RS in printed.getvalue() and "in delegate_to" in printed.getvalue()
        # The task's repr names where the Rust function is, as it does for `async def`.
        assert "coro=<delegate_to() running at " in repr(task)


@pytest.mark.anyio
@pytest.mark.skipif(sys.version_info < (3, 14), reason="asyncio's call graphs are 3.14's")
async def test_asyncio_call_graph_continues_through_the_rust_coroutine(loop_name):
    if loop_name == "trio":
        pytest.skip("capture_call_graph is asyncio's")
    async with parked(loop_name) as (task, coroutine, event):
        graph = asyncio.capture_call_graph(task)
        names = [entry.frame.f_code.co_name for entry in graph.call_stack]
        # Innermost first (anyio's and asyncio's `wait`), then the Python coroutine the Rust
        # one awaits, then the Rust function, the task's own coroutine.
        assert names[-2:] == ["leaf", "delegate_to"], names
        printed = asyncio.format_call_graph(task)
        assert "delegate_to" in printed and NATIVE_RS in printed


@pytest.mark.anyio
async def test_trio_await_frames_continue_through_the_rust_coroutine(loop_name):
    if loop_name != "trio":
        pytest.skip("iter_await_frames is trio's")
    async with parked(loop_name) as (task, coroutine, event):
        frames = [frame for frame, _ in task.iter_await_frames()]
        # trio's wrapper, then the Rust function, then the Python code it awaits.
        assert [frame.f_code.co_name for frame in frames[:1]] == ["python_wrapper"]
        assert is_delegate_to(frames[1])
        assert frames[2].f_code is leaf.__code__


def test_a_macro_generator_has_its_functions_names():
    generator = m.macro_count(1)
    assert (generator.__name__, generator.__qualname__) == ("macro_count", "macro_count")
    assert repr(generator) == "<pyo3_async async_generator macro_count>"
    plain = m.count(1)
    assert plain.__qualname__ == "AsyncGenerator"


def test_the_bridge_types_live_in_the_module_that_added_them():
    # `pyo3_async::add_types(m)`: an importable module, where the types are found again.
    coroutine = m.echo(1)
    for kind in (type(coroutine), type(m.count(1)), m.PanicError):
        home = importlib.import_module(kind.__module__)
        exported = getattr(home, kind.__name__)
        if ABI3 and kind is type(coroutine):
            # Under abi3 an exported function's coroutine is made in the awaited class: a
            # subclass of the exported one adding type slots, named as it is.
            assert kind.__bases__ == (exported,), kind
        else:
            assert exported is kind, kind
    coroutine.close()


@pytest.mark.anyio
async def test_a_cleared_frame_is_replaced_while_the_coroutine_runs(loop_name):
    async with parked(loop_name) as (task, coroutine, event):
        if loop_name == "trio":
            coroutine = coroutine.cr_await
        frame = coroutine.cr_frame
        try:
            frame.clear()
        except RuntimeError:
            pass  # a suspended frame refuses on some Pythons: nothing to replace then
        assert is_delegate_to(coroutine.cr_frame)
        assert inspect.getcoroutinestate(coroutine) == inspect.CORO_SUSPENDED
        if loop_name != "trio":
            assert "running at" in repr(task)


@pytest.mark.anyio
async def test_a_native_coroutine_awaited_by_another_task_is_refused(loop_name):
    # As Python's own `await` refuses it: driving it from a second task would give both
    # tasks its wake-ups, and cancelling the second would cancel the first.
    event = anyio.Event()
    shared = leaf(event)
    results = []

    async def first():
        await shared
        results.append("first done")

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(first)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="coroutine is being awaited already"):
            await m.delegate_to(shared)
        event.set()
    assert results == ["first done"]


@pytest.mark.anyio
async def test_the_frame_is_a_coroutines_frame():
    # 3.14's call graphs label a frame by what runs it: `async` for a coroutine.
    seen = []
    coroutine = m.call_during_poll(lambda: seen.append(coroutine.cr_frame))
    await coroutine
    assert len(seen) == 2
    assert all(frame.f_code.co_flags & inspect.CO_COROUTINE for frame in seen)

"""Adversarial scenarios for the borrow flag (`GilCell`), the raw `am_await`/`am_anext` slots,
the abi3 awaited class and the boxed rare parts of a driver."""

import asyncio
import copy
import gc
import pickle
import subprocess
import sys
import textwrap
import threading
import weakref

import anyio
import pytest

import pyo3_async_pytests as m
from helpers import ABI3, until

pytestmark = pytest.mark.anyio


def run_python(code):
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


# ---- GilCell: re-entrant borrows of a coroutine's driver ----


async def test_resuming_a_coroutine_from_inside_its_own_poll_is_refused():
    seen = []

    def callback():
        for resume in (
            lambda: coroutine.send(None),
            lambda: coroutine.throw(ValueError("x")),
            lambda: coroutine.close(),
            lambda: next(coroutine),
        ):
            with pytest.raises(ValueError, match="already executing"):
                resume()
        seen.append((coroutine.cr_running, coroutine.cr_await, coroutine.cr_frame is not None))
        # The collector meets the borrowed driver: it must skip it, not deadlock or crash.
        gc.collect()
        return len(seen)

    coroutine = m.call_during_poll(callback)
    assert await coroutine == (1, 2)
    assert [s[0] for s in seen] == [True, True]
    assert not coroutine.cr_running


async def test_awaiting_a_coroutine_from_inside_its_own_first_poll():
    # The first poll runs before the coroutine is marked claimed (a task started it with
    # `send`): `__await__` from inside the poll must not give a second driver.
    outcomes = []

    def callback():
        try:
            iterator = coroutine.__await__()
        except (RuntimeError, ValueError) as error:
            outcomes.append(type(error))
            return 0
        assert iterator is coroutine
        with pytest.raises(ValueError, match="already executing"):
            iterator.send(None)
        outcomes.append("claimed")
        return 0

    coroutine = m.call_during_poll(callback)
    if isinstance(asyncio.current_task() if sniff() == "asyncio" else None, asyncio.Task):
        task = asyncio.ensure_future(coroutine)
        assert await task == (0, 0)
    else:
        assert await coroutine == (0, 0)
    assert outcomes


def sniff():
    import sniffio

    return sniffio.current_async_library()


async def test_a_coroutine_resumed_from_another_thread_while_its_poll_is_detached():
    latch = m.Latch()
    coroutine = m.block_on_latch(latch, timeout=60, allow_threads=True)
    results = {}

    def other_thread():
        latch.wait_blocked()
        try:
            results["running"] = coroutine.cr_running
            results["await"] = repr(coroutine.cr_await)
            results["frame"] = coroutine.cr_frame
            results["state"] = coroutine.cr_state
            for name, resume in (
                ("send", lambda: coroutine.send(None)),
                ("throw", lambda: coroutine.throw(ValueError("x"))),
                ("close", lambda: coroutine.close()),
                ("await", lambda: coroutine.__await__()),
            ):
                try:
                    resume()
                except BaseException as error:  # noqa: BLE001
                    results[name] = (type(error).__name__, str(error))
                else:
                    results[name] = "no error"
            gc.collect()
        finally:
            latch.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    try:
        assert await coroutine is True
    finally:
        thread.join()
    assert results["running"] is True
    assert results["state"] == "CORO_RUNNING"
    for name in ("send", "throw", "close"):
        assert results[name] == ("ValueError", "coroutine already executing"), results
    assert results["await"] != "no error"


async def test_many_threads_hammer_a_detached_poll():
    latch = m.Latch()
    coroutine = m.block_on_latch(latch, timeout=60, allow_threads=True)
    refused = []
    errors = []

    def hammer():
        for _ in range(200):
            try:
                coroutine.send(None)
            except ValueError as error:
                refused.append(str(error))
            except BaseException as error:  # noqa: BLE001
                errors.append(error)
            _ = coroutine.cr_running, coroutine.cr_await, coroutine.cr_frame

    def driver():
        latch.wait_blocked()
        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        latch.set()

    thread = threading.Thread(target=driver)
    thread.start()
    try:
        assert await coroutine is True
    finally:
        thread.join()
    assert not errors
    assert len(refused) == 800
    assert set(refused) == {"coroutine already executing"}


# ---- am_await ----


async def test_await_twice():
    coroutine = m.ready(1)
    assert await coroutine == 1
    with pytest.raises(RuntimeError):
        await coroutine


async def test_await_after_close():
    coroutine = m.ready(1)
    coroutine.close()
    with pytest.raises(RuntimeError):
        await coroutine


async def test_await_after_a_failed_first_await():
    coroutine = m.fail(KeyError("k"), suspend=False)
    with pytest.raises(KeyError):
        await coroutine
    with pytest.raises(RuntimeError):
        await coroutine


async def test_explicit_dunder_await_then_await():
    coroutine = m.ready(5)
    assert coroutine.__await__() is coroutine
    with pytest.raises(RuntimeError, match="awaited already"):
        await coroutine
    # Still drivable by hand.
    with pytest.raises(StopIteration) as stop:
        coroutine.send(None)
    assert stop.value.value == 5


async def test_await_after_send_none():
    # A started coroutine is claimed: awaiting it again is refused, not re-driven.
    probe = m.Probe()
    coroutine = m.pending_forever(probe)
    try:
        coroutine.send(None)
    except Exception:  # noqa: BLE001 - trio/asyncio need a loop context; only the claim matters
        pass
    with pytest.raises(RuntimeError):
        await coroutine
    coroutine.close()
    assert probe.dropped


async def test_await_from_two_tasks():
    trigger = m.Trigger()
    coroutine = trigger.wait(7)
    outcomes = []

    async def waiter():
        try:
            outcomes.append(await coroutine)
        except RuntimeError as error:
            outcomes.append(str(error))

    async with anyio.create_task_group() as group:
        group.start_soon(waiter)
        group.start_soon(waiter)
        await until(lambda: len(outcomes) == 1)
        trigger.fire()
    assert sorted(map(str, outcomes)) == ["7", "coroutine is being awaited already"]


async def test_a_closed_awaited_coroutine_reports_its_end():
    coroutine = m.ready(1)
    assert await coroutine == 1
    coroutine.close()
    with pytest.raises(RuntimeError):
        await coroutine
    with pytest.raises(RuntimeError):
        coroutine.__await__()


async def test_the_coroutine_class_keeps_its_references_over_many_awaits():
    cls = m.Coroutine
    awaited = m.ready(0)
    await awaited
    awaited_cls = type(awaited)
    del awaited
    gc.collect()
    before = sys.getrefcount(cls), sys.getrefcount(awaited_cls)
    for i in range(100_000):
        assert await m.ready(i) == i
    gc.collect()
    after = sys.getrefcount(cls), sys.getrefcount(awaited_cls)
    assert after == before


def test_first_await_in_a_fresh_process():
    out = run_python(
        """
        import asyncio, gc, sys
        import pyo3_async_pytests as m

        async def main():
            c = m.ready(1)
            first = await c
            try:
                await c
            except RuntimeError as e:
                second = str(e)
            return first, second, await m.ready(2)

        print(asyncio.run(main()))
        """
    )
    assert out.strip() == "(1, 'cannot reuse already awaited coroutine', 2)"


def test_first_operation_in_a_fresh_process_is_awaiting_a_closed_coroutine():
    out = run_python(
        """
        import asyncio
        import pyo3_async_pytests as m

        async def main():
            c = m.ready(1)
            c.close()
            try:
                await c
            except RuntimeError as e:
                msg = str(e)
            d = m.ready(3)
            d.__await__()
            try:
                await d
            except RuntimeError as e:
                msg2 = str(e)
            return msg, msg2, await m.ready(4)

        print(asyncio.run(main()))
        """
    )
    assert "4)" in out, out


def test_first_operation_in_a_fresh_process_is_a_trio_send():
    out = run_python(
        """
        import trio
        import pyo3_async_pytests as m

        async def main():
            c = m.ready(1)
            x = await c
            try:
                await c
            except RuntimeError as e:
                return x, str(e)

        print(trio.run(main))
        """
    )
    assert out.strip() == "(1, 'cannot reuse already awaited coroutine')"


# ---- am_anext and async generators ----


async def test_async_for_and_anext_builtin_agree():
    assert [i async for i in m.count(5)] == list(range(5))
    generator = m.count(3)
    assert [await anext(generator), await anext(generator), await generator.__anext__()] == [0, 1, 2]
    with pytest.raises(StopAsyncIteration):
        await anext(generator)
    assert await anext(generator, "default") == "default"


async def test_aclose_inside_async_for():
    probe = m.Probe()
    generator = m.endless(5, probe)
    seen = []
    async for item in generator:
        seen.append(item)
        if item == 2:
            await generator.aclose()
    assert seen == [0, 1, 2]
    assert probe.dropped


async def test_a_step_keeps_its_generator_alive():
    generator = m.count(3)
    alive = weakref.ref(generator)
    step = anext(generator)
    del generator
    gc.collect()
    assert alive() is not None
    assert await step == 0
    del step
    gc.collect()
    assert alive() is None


async def test_a_step_dropped_unawaited_releases_its_generator():
    probe = m.Probe()
    generator = m.endless(2, probe)
    alive = weakref.ref(generator)
    for _ in range(1000):
        step = generator.__anext__()
        del step
    # The generator is still usable after unawaited steps.
    assert await anext(generator) == 0
    del generator
    gc.collect()
    assert alive() is None
    assert probe.dropped


async def test_a_pending_step_outlives_its_generator_and_is_cancelled():
    probe = m.Probe()
    generator = m.endless(0, probe)
    alive = weakref.ref(generator)
    with anyio.move_on_after(0) as scope:
        step = anext(generator)
        del generator
        await step
    assert scope.cancelled_caught
    del step
    gc.collect()
    assert alive() is None
    assert probe.dropped


async def test_a_generator_in_a_cycle_with_its_pending_step_is_collected():
    probe = m.Probe()

    class Holder:
        pass

    holder = Holder()
    holder.generator = m.endless(1, probe)
    assert await anext(holder.generator) == 0
    holder.step = anext(holder.generator)
    holder.self = holder
    alive = weakref.ref(holder.generator)
    del holder
    gc.collect()
    assert alive() is None
    assert probe.dropped


async def test_a_stream_reaching_into_its_own_generator_through_every_door():
    refused = []

    def poll():
        for make in (
            lambda: anext(generator),
            lambda: generator.__anext__(),
            lambda: generator.asend(None),
            lambda: generator.aclose(),
            lambda: generator.athrow(ValueError("x")),
        ):
            step = make()
            with pytest.raises(RuntimeError, match="already running"):
                step.send(None)
            refused.append(1)
        gc.collect()
        return None if len(refused) >= 10 else len(refused)

    generator = m.calls_back(poll)
    assert [i async for i in generator] == [5]
    assert [i async for i in generator] == []


async def test_concurrent_anext_through_the_builtin():
    probe = m.Probe()
    generator = m.endless(0, probe)
    async with anyio.create_task_group() as group:
        group.start_soon(anext, generator)
        await until(lambda: probe.polled)
        for _ in range(100):
            with pytest.raises(RuntimeError, match="already running"):
                await anext(generator)
        group.cancel_scope.cancel()
    assert probe.dropped


async def test_many_generators_iterated_do_not_leak():
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(2000):
        async for _ in m.count(3):
            pass
        generator = m.count(3)
        await anext(generator)
        del generator
    gc.collect()
    assert len(gc.get_objects()) - before < 100


# ---- abi3 awaited class / class identity ----


async def test_type_and_isinstance_before_and_after_await():
    # Under abi3 the coroutine is made in its awaited class (a subclass), and stays there.
    coroutine = m.ready(1)
    before = type(coroutine)
    assert (before is m.Coroutine) == (not ABI3)
    assert isinstance(coroutine, m.Coroutine)
    await coroutine
    assert type(coroutine) is before
    assert isinstance(coroutine, m.Coroutine)
    assert type(coroutine).__name__ == "Coroutine"
    assert type(coroutine).__module__ == m.Coroutine.__module__


async def test_pickle_copy_and_weakref_of_an_awaited_coroutine():
    trigger = m.Trigger()
    coroutine = trigger.wait(3)
    ref = weakref.ref(coroutine)
    async with anyio.create_task_group() as group:

        async def run():
            assert await coroutine == 3

        group.start_soon(run)
        await until(lambda: coroutine.cr_suspended)
        with pytest.raises(TypeError):
            pickle.dumps(coroutine)
        with pytest.raises(TypeError):
            copy.copy(coroutine)
        with pytest.raises(TypeError):
            copy.deepcopy(coroutine)
        assert ref() is coroutine
        trigger.fire()
    del coroutine
    gc.collect()
    assert ref() is None


async def test_a_forgotten_native_coroutine_awaiting_a_rust_one_is_collected(loop_name):
    probe = m.Probe()

    async def outer():
        inner = m.pending_forever(probe)
        await inner

    coroutine = outer()
    coroutine.send(None) if loop_name != "trio" else None
    if loop_name == "trio":
        coroutine.close()
        assert True
        return
    ref = weakref.ref(coroutine)
    frame_cycle = [coroutine]
    frame_cycle.append(frame_cycle)
    del coroutine, frame_cycle
    gc.collect()
    assert ref() is None
    assert probe.dropped


def test_python_cannot_subclass_and_instantiate_coroutine():
    try:

        class Sub(m.Coroutine):  # type: ignore[misc]
            pass

    except TypeError:
        assert not ABI3
        return
    with pytest.raises(TypeError):
        Sub()


async def test_class_assignment_on_a_coroutine():
    coroutine = m.ready(1)
    await coroutine
    awaited_cls = type(coroutine)
    try:
        coroutine.__class__ = m.Coroutine
    except TypeError:
        pass
    else:
        assert type(coroutine) is m.Coroutine
        with pytest.raises(RuntimeError):
            await coroutine
        coroutine.__class__ = awaited_cls
    before = sys.getrefcount(m.Coroutine), sys.getrefcount(awaited_cls)
    del coroutine
    gc.collect()
    after = sys.getrefcount(m.Coroutine), sys.getrefcount(awaited_cls)
    assert after[0] <= before[0]


def test_class_assignment_to_a_slotless_python_subclass_then_await():
    # abi3 only: Coroutine allows subclasses; a subclass with no slots has its layout, so
    # `__class__` may move a coroutine into it before `__await__` moves it again.
    out = run_python(
        """
        import asyncio, gc, sys
        import pyo3_async_pytests as m

        try:
            class Sub(m.Coroutine):
                __slots__ = ()
        except TypeError:
            print("no subclass"); raise SystemExit

        async def main():
            for i in range(2000):
                c = m.ready(i)
                try:
                    c.__class__ = Sub
                except TypeError as e:
                    print("refused", e); return
                assert await c == i
                del c
            c = m.ready(0)
            c.__class__ = Sub
            del c
            gc.collect()

        before = sys.getrefcount(Sub)
        asyncio.run(main())
        gc.collect()
        print("sub refs", before, sys.getrefcount(Sub))
        """
    )
    if "sub refs" in out:
        before, after = map(int, out.split("sub refs")[1].split())
        assert after == before, out


def test_suspended_awaited_coroutines_at_interpreter_exit():
    out = run_python(
        """
        import asyncio
        import pyo3_async_pytests as m

        KEEP = []

        async def main():
            probe = m.Probe()
            c = m.pending_forever(probe)
            KEEP.append(c)
            KEEP.append(asyncio.ensure_future(c))
            t = m.Trigger()
            KEEP.append(asyncio.ensure_future(t.wait()))
            await asyncio.sleep(0)
            g = m.endless(1, m.Probe())
            KEEP.append(g)
            KEEP.append(g.__anext__())
            print("ok")

        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        KEEP.append(loop)
        """
    )
    assert out.strip() == "ok"


# ---- rare parts: delegation, cancel handles, frames ----


async def test_delegation_then_frame_then_close():
    event = anyio.Event()

    async def leaf():
        await event.wait()
        return "leaf"

    coroutine = m.delegate_to(leaf())
    frame_before = True
    async with anyio.create_task_group() as group:
        results = []

        async def run():
            results.append(await coroutine)

        group.start_soon(run)
        await until(lambda: coroutine.cr_await is not None)
        assert coroutine.cr_frame is not None
        gc.collect()
        event.set()
    assert results == ["leaf"]
    assert coroutine.cr_frame is None
    assert frame_before is not None


async def test_frame_then_close_before_start(loop_name):
    if loop_name == "trio":
        pytest.skip("a hand-driven coroutine on trio reschedules the test's own task")
    frames = []

    def callback():
        frames.append(coroutine.cr_frame)
        return 0

    for _ in range(300):
        coroutine = m.call_during_poll(callback)
        assert coroutine.cr_frame is None or coroutine.cr_frame is not None
        with pytest.raises(StopIteration):
            coroutine.send(None)
            coroutine.send(None)
        coroutine.close()
        assert coroutine.cr_frame is None
        del coroutine
    gc.collect()
    assert len(frames) >= 300
    for frame in frames:
        frame.clear()


async def test_delegation_collected_in_a_cycle(loop_name):
    if loop_name == "trio":
        pytest.skip("a bare send needs an asyncio task")
    event = asyncio.Event()
    coroutine = m.delegate_to(event.wait())
    frame = coroutine.cr_frame
    ref = weakref.ref(coroutine)
    task = asyncio.ensure_future(coroutine)
    await until(lambda: coroutine.cr_await is not None)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    del coroutine, task, frame
    await until(lambda: gc.collect() is not None and ref() is None)

"""Attack on the shared allocation (commits 86a1deb..d1bc3c1): a coroutine's waiter, driver and
future in one `Arc` (src/rust_to_py/driver/shared.rs) that every waker references strongly and
the loop's home and trio's abort function weakly; the coroutine's destructor releasing the
driver while wakers live on; the "cancel delivered" flag and the coroutine's own flags moved
into `DriverFlags`; the one-word tagged `Label` (src/rust_to_py/label.rs); the collector
reporting the parked wake-up only while no waker is alive.

What was attacked:
- wakers outliving the coroutine: kept by a foreign thread that wakes them in a tight loop
  while Python drops the coroutine, then drops the last waker there without the GIL
  (`m.ForeignWaker`, pytests/src/attack5.rs); a real task spinning on such a waker, cancelled
  (trio's abort racing the wakes); thousands of wakes after the coroutine is gone;
- the census (`py_stats`) after coroutines released with wakers alive;
- the collector: forgotten tasks whose waker lives outside (not freed) and are freed once the
  waker goes; forgotten tasks whose future keeps its own waker, collected repeatedly;
- trio's abort by hand (twice, then late wakes that must not reschedule the test's task),
  abort while the driver is borrowed (from inside the coroutine's own poll), repeated
  cancellations of a cancel-handle coroutine;
- the flags: `__await__` twice, `__await__` then drop (warns), close then await/send, `close`,
  `__await__` and `send` re-entered from the coroutine's own poll, dropping coroutines with a
  fixed backend, async-generator steps dropped unawaited (quiet);
- labels: every order of static label / `with_qualname` / `with_source`, reprs and names,
  tracebacks, never-awaited warnings naming the label, boxed labels made and dropped by the
  hundred thousand and from several threads (RSS), async generators renamed;
- memory: 100k coroutines suspended with a kept waker and dropped, in rounds (RSS);
- process exit with a foreign thread still waking a live coroutine's waker.
"""

import asyncio
import gc
import sys
import threading
import traceback
import warnings
import weakref

import anyio
import anyio.lowlevel
import pytest

import pyo3_async_pytests as m
from helpers import forgotten_tasks, freed, run_script, start_forgotten, until, until_threads

pytestmark = pytest.mark.anyio


class Payload:
    """A Python object living inside a Rust future, followed with a weak reference."""


def rss_kib():
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    import resource

    return pages * resource.getpagesize() // 1024


def suspended():
    return m.pyo3_async_stats()["suspended_coroutines"]


# ---- wakers outliving the coroutine ---------------------------------------------------------


async def test_a_foreign_thread_waking_in_a_loop_while_the_coroutine_goes():
    """The coroutine is dropped while another thread wakes its waker as fast as it can; the
    future (and the Python object in it) goes at once; the thread's later wakes and its drop of
    the last waker, without the GIL, do nothing."""
    before = suspended()
    for _ in range(50):
        foreign, payload = m.ForeignWaker(), Payload()
        ref = weakref.ref(payload)
        coroutine = foreign.wait(payload)
        del payload
        coroutine.send(None)
        foreign.start()
        del coroutine
        assert ref() is None, "the future went with its coroutine"
        assert foreign.stop() > 0
    await anyio.lowlevel.checkpoint()
    assert suspended() == before


async def test_the_last_waker_dropped_on_a_foreign_thread_before_or_after_the_coroutine():
    for waker_first in (False, True):
        foreign, payload = m.ForeignWaker(), Payload()
        ref = weakref.ref(payload)
        coroutine = foreign.wait(payload)
        del payload
        coroutine.send(None)
        if waker_first:
            assert foreign.drop_on_thread()
            assert ref() is not None
            del coroutine
        else:
            del coroutine
            assert ref() is None
            assert foreign.drop_on_thread()
        assert ref() is None
        await anyio.lowlevel.checkpoint()


async def test_a_task_spinning_on_a_foreign_waker_is_cancelled_mid_storm(loop_name):
    """A real task whose (old) waker a foreign thread wakes without pause: every wake resumes
    the current suspension. Cancelling it races the loop's cancellation (trio's abort) with
    the wakes; the task must end, its future must go, and the storm after it do nothing."""
    before = suspended()
    for _ in range(20):
        foreign, payload = m.ForeignWaker(), Payload()
        ref = weakref.ref(payload)
        async with anyio.create_task_group() as group:

            async def wait(payload=payload):
                await foreign.wait(payload)

            group.start_soon(wait)
            del payload
            await until(lambda: foreign.has_waker)
            foreign.start()
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            group.cancel_scope.cancel()
        del wait
        gc.collect()
        assert ref() is None
        assert foreign.stop() > 0
    await anyio.lowlevel.checkpoint()
    assert suspended() == before


async def test_dropping_from_another_python_thread_while_wakes_storm():
    """The coroutine's last reference goes on a Python thread other than the loop's."""
    foreign, payload = m.ForeignWaker(), Payload()
    ref = weakref.ref(payload)
    holder = [foreign.wait(payload)]
    del payload
    holder[0].send(None)
    foreign.start()
    thread = threading.Thread(target=holder.clear)
    thread.start()
    thread.join()
    assert ref() is None
    assert foreign.stop() > 0


async def test_the_census_forgets_released_coroutines():
    before = suspended()
    stashes = [m.WakerStash() for _ in range(200)]
    coroutines = [stash.wait(1) for stash in stashes]
    for coroutine in coroutines:
        coroutine.send(None)
    del coroutines, coroutine
    gc.collect()
    assert suspended() == before
    for stash in stashes:
        stash.wake()
    await anyio.lowlevel.checkpoint()
    assert suspended() == before


# ---- the collector --------------------------------------------------------------------------


async def test_forgotten_tasks_are_freed_once_their_outside_waker_goes(loop_name):
    """While a waker lives outside, a forgotten task is a root (not freed); once the last waker
    is dropped (on a foreign thread), the collector must see the cycle and free it."""
    forgotten_tasks(loop_name)
    foreigns = [m.ForeignWaker() for _ in range(50)]
    makers = iter(foreigns)
    refs = await start_forgotten(lambda: next(makers).wait(Payload()), len(foreigns))
    assert all(foreign.has_waker for foreign in foreigns)
    assert freed(refs) == 0
    for foreign in foreigns:
        assert foreign.drop_on_thread()
    assert freed(refs) == len(refs)


async def test_forgotten_tasks_keeping_their_own_waker_survive_repeated_collections(loop_name):
    """The documented root: never freed, never half-freed (still cancellable after many
    collections), then gone once cancelled."""
    forgotten_tasks(loop_name)
    dropped = m.futures_dropped()
    refs = await start_forgotten(m.keeps_its_own_waker, 50)
    for _ in range(5):
        assert freed(refs) == 0
    tasks = [ref() for ref in refs]
    for task in tasks:
        task.cancel()
    await until(lambda: all(task.done() for task in tasks))
    assert all(task.cancelled() for task in tasks)
    del tasks, task
    assert freed(refs) == 50
    assert m.futures_dropped() - dropped == 50


# ---- trio's abort ---------------------------------------------------------------------------


async def test_trio_abort_by_hand_twice_then_late_wakes_reschedule_nothing(loop_name):
    if loop_name != "trio":
        pytest.skip("trio's abort function")
    import trio

    for _ in range(100):
        stash = m.WakerStash()
        coroutine = stash.wait(1)
        trap = coroutine.send(None)
        assert trap.abort_func(lambda: None) is trio.lowlevel.Abort.SUCCEEDED
        assert trap.abort_func(lambda: None) is trio.lowlevel.Abort.FAILED
        # An aborted suspension must never reschedule the task that parked (this one, which
        # is running): trio would fail the run.
        stash.wake()
        stash.wake_from_threads(50, 2)
        await trio.lowlevel.checkpoint()
        del coroutine
        assert trap.abort_func(lambda: None) is trio.lowlevel.Abort.FAILED


async def test_trio_abort_from_inside_another_coroutines_poll(loop_name):
    """A parked coroutine's abort function, called from inside another coroutine's poll (whose
    driver is borrowed): SUCCEEDED once, then FAILED; no deadlock, no panic. (Its own abort
    from inside its own poll is out of reach: `suspend_once` is a trio checkpoint on trio.)"""
    if loop_name != "trio":
        pytest.skip("trio's abort function")
    import trio

    answers = []
    traps = []

    def callback():
        if traps:
            answers.append(traps[0].abort_func(lambda: None))
        return len(answers)

    stash = m.WakerStash()
    parked = stash.wait(1)
    traps.append(parked.send(None))
    # The abort of another coroutine's suspension from inside this one's poll: not borrowed.
    assert await m.call_during_poll(callback) == (1, 2)
    assert answers[0] is trio.lowlevel.Abort.SUCCEEDED
    assert answers[1] is trio.lowlevel.Abort.FAILED
    parked.close()



async def test_repeated_cancellations_of_a_cancel_handle_coroutine(loop_name):
    """Each cancel scope around a cancel-handle coroutine cancelled, innermost first and
    outermost first: the handle hears one cancellation, the coroutine ends once, with the
    cancellation."""
    for order in ("inner-first", "outer-first"):
        log = []
        with anyio.CancelScope() as outer:
            with anyio.CancelScope() as inner:
                async with anyio.create_task_group() as group:

                    async def hold():
                        await m.macro_until_cancelled(log)

                    group.start_soon(hold)
                    for _ in range(5):
                        await anyio.lowlevel.checkpoint()
                    first, second = (inner, outer) if order == "inner-first" else (outer, inner)
                    first.cancel()
                    second.cancel()
                    group.cancel_scope.cancel()
        assert log == ["cancelled"], order
        assert outer.cancel_called


async def test_cleanup_on_cancel_while_a_late_waker_storms(loop_name):
    """A cancel-handle coroutine cleans up (a tokio round trip) after its cancellation; the
    probe sees it cleaned up and dropped."""
    for _ in range(20):
        probe = m.Probe()
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:

                async def clean():
                    await m.cleanup_on_cancel(probe)

                group.start_soon(clean)
                await until(lambda: probe.polled or True)
                for _ in range(3):
                    await anyio.lowlevel.checkpoint()
                scope.cancel()
                scope.cancel()
        assert scope.cancelled_caught or scope.cancel_called
        await until_threads(lambda: probe.dropped)
        assert probe.cleaned_up


# ---- the flags ------------------------------------------------------------------------------


def test_await_twice_then_drop_warns_never_awaited():
    coroutine = m.ready(1)
    coroutine.__await__()
    with pytest.raises(RuntimeError, match="awaited already"):
        coroutine.__await__()
    with pytest.warns(RuntimeWarning, match="coroutine 'Coroutine' was never awaited"):
        del coroutine
        gc.collect()


def test_close_then_await_or_send_raises_and_drop_is_quiet():
    coroutine = m.relabelled([("qualname", "Q.closed")], 1)
    coroutine.close()
    coroutine.close()
    with pytest.raises(RuntimeError, match="cannot reuse"):
        coroutine.send(None)
    # As a native coroutine: `__await__` of a closed coroutine is allowed, its first step raises.
    assert coroutine.__await__() is coroutine
    with pytest.raises(RuntimeError, match="cannot reuse"):
        next(coroutine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del coroutine
        gc.collect()


def test_a_coroutine_that_ran_to_its_end_by_hand_is_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for make in (lambda: m.ready(1), lambda: m.echo(2), lambda: m.ready(3, backend="trio")):
            coroutine = make()
            with pytest.raises(StopIteration):
                coroutine.send(None)
            del coroutine
        gc.collect()


async def test_re_entering_a_coroutine_from_its_own_poll_raises(loop_name):
    for name in ("close", "__await__", "send", "throw"):
        holder = []

        def reenter(name=name):
            try:
                if name == "send":
                    holder[0].send(None)
                elif name == "throw":
                    holder[0].throw(ValueError("x"))
                else:
                    getattr(holder[0], name)()
            except (ValueError, RuntimeError) as error:
                return type(error).__name__
            return "no error"

        coroutine = m.call_during_poll(reenter)
        holder.append(coroutine)
        assert await coroutine == ("ValueError", "ValueError"), name
        del holder[:], coroutine


async def test_a_fixed_backend_coroutine_dropped_suspended_on_another_loop(loop_name):
    other = "asyncio" if loop_name == "trio" else "trio"
    probe = m.Probe()
    coroutine = m.pending_forever(probe, other)
    try:
        coroutine.send(None)
    except Exception:  # noqa: BLE001 - refusing the loop is fine; crashing is not
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        del coroutine
        gc.collect()
    assert probe.dropped


def test_async_generator_steps_dropped_unawaited_are_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for make in (lambda: m.count(3), lambda: m.relabelled_generator(3, "G.steps")):
            generator = make()
            generator.__anext__()
            generator.asend(None)
            generator.aclose()
            del generator
        gc.collect()


# ---- labels ---------------------------------------------------------------------------------

LABELS = [
    ([], "Coroutine", None),
    ([("qualname", "Outer.inner")], "Outer.inner", None),
    ([("static", "")], "Static.label", ("pytests/src/attack5.rs", 17)),
    ([("static", ""), ("qualname", "Re.named")], "Re.named", ("pytests/src/attack5.rs", 17)),
    ([("static", ""), ("source", "99")], "Static.label", ("pytests/src/attack5.rs", 99)),
    ([("qualname", "A.b"), ("source", "5")], "A.b", ("pytests/src/attack5.rs", 5)),
    ([("source", "5"), ("qualname", "late")], "late", ("pytests/src/attack5.rs", 5)),
    ([("qualname", "one"), ("qualname", "two.three")], "two.three", None),
    ([("qualname", "ünï.cødé")], "ünï.cødé", None),
    ([("qualname", "")], "", None),
    ([("qualname", "x" * 10_000)], "x" * 10_000, None),
    ([("static", ""), ("qualname", "s"), ("static", "")], "Static.label", ("pytests/src/attack5.rs", 17)),
]


@pytest.mark.parametrize("steps, qualname, source", LABELS, ids=[str(i) for i in range(len(LABELS))])
async def test_labels_read_back_in_names_reprs_and_tracebacks(steps, qualname, source):
    coroutine = m.relabelled(steps, "k", fail=True)
    assert coroutine.__qualname__ == qualname
    assert coroutine.__name__ == qualname.rsplit(".", 1)[-1]
    assert repr(coroutine) == f"<pyo3_async coroutine {qualname}>"
    with pytest.raises(KeyError) as raised:
        await coroutine
    last = traceback.extract_tb(raised.value.__traceback__)[-1]
    if steps:
        assert last.name == coroutine.__name__
        if source is not None:
            assert last.filename == source[0]
    if source is not None:
        assert coroutine.cr_code.co_filename == source[0]
        assert coroutine.cr_code.co_firstlineno == source[1]


async def test_the_traceback_entry_names_the_labels_line():
    """`with_source`'s docs: the entry reads `File "<file>", line <line>` (it read line + 1
    while src/glue/frames.py raised on the second line of `_reraise`)."""
    with pytest.raises(KeyError) as raised:
        await m.relabelled([("qualname", "A.b"), ("source", "5")], "k", fail=True)
    assert traceback.extract_tb(raised.value.__traceback__)[-1].lineno == 5


@pytest.mark.parametrize("qualname", ["Q.never", "ünï", ""])
def test_never_awaited_warnings_name_the_boxed_label(qualname):
    coroutine = m.relabelled([("qualname", qualname), ("source", "3")], 1)
    with pytest.warns(RuntimeWarning, match=f"coroutine '{qualname}' was never awaited"):
        del coroutine
        gc.collect()


def test_never_awaited_warning_for_a_qualname_with_a_nul():
    """It went silent: the message was made as a C string."""
    coroutine = m.relabelled([("qualname", "a\0b")], 1)
    with pytest.warns(RuntimeWarning, match="was never awaited"):
        del coroutine
        gc.collect()


def test_renamed_async_generators():
    generator = m.relabelled_generator(2, "Feed.items")
    assert (generator.__qualname__, generator.__name__) == ("Feed.items", "items")
    del generator


def churn_labels(count):
    for i in range(count):
        coroutine = m.relabelled([("static", ""), ("qualname", f"n.{i % 7}"), ("source", "1")], i)
        assert coroutine.__name__ == str(i % 7)
        coroutine.close()


def test_boxed_labels_made_and_dropped_by_the_hundred_thousand_do_not_leak():
    churn_labels(20_000)
    start = rss_kib()
    for _ in range(5):
        churn_labels(20_000)
    assert rss_kib() - start < 4096, "RSS grew by more than 4 MiB over 100k boxed labels"


def test_boxed_labels_from_several_threads():
    errors = []

    def work():
        try:
            churn_labels(5_000)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


# ---- memory ---------------------------------------------------------------------------------


async def suspend_and_drop(count):
    stashes = [m.WakerStash() for _ in range(count)]
    coroutines = [stash.wait(1) for stash in stashes]
    traps = [coroutine.send(None) for coroutine in coroutines]
    assert all(stash.has_waker for stash in stashes)
    del coroutines, traps
    await anyio.lowlevel.checkpoint()
    del stashes


async def test_100k_coroutines_suspended_with_a_kept_waker_and_dropped_do_not_leak(loop_name):
    before = suspended()
    await suspend_and_drop(20_000)
    gc.collect()
    start = rss_kib()
    for _ in range(5):
        await suspend_and_drop(20_000)
    gc.collect()
    assert rss_kib() - start < 8192, "RSS grew by more than 8 MiB over 100k coroutines"
    assert suspended() == before


# ---- process exit ---------------------------------------------------------------------------


@pytest.mark.parametrize("runner", ["asyncio"])
def test_exit_with_a_foreign_thread_still_waking_a_live_coroutine(runner):
    """asyncio only: on trio a by-hand suspension's wake-up reschedules the (running) main task,
    which trio rightly treats as an internal error."""
    out = run_script(
        f"""
        import {runner}
        import pyo3_async_pytests as m

        class Payload:
            pass

        foreign = m.ForeignWaker()
        kept = []

        async def main():
            coroutine = foreign.wait(Payload())
            kept.append(coroutine)
            kept.append(coroutine.send(None))
            foreign.start()

        {runner}.run(main{'()' if runner == 'asyncio' else ''})
        print("exiting")
        """
    )
    assert out.strip() == "exiting"


@pytest.mark.parametrize("runner", ["asyncio", "trio"])
def test_exit_while_a_task_spins_on_a_foreign_waker(runner):
    run_script(
        f"""
        import {runner}
        import pyo3_async_pytests as m

        foreign = m.ForeignWaker()

        async def spin():
            await foreign.wait(object())

        async def main():
            if "{runner}" == "asyncio":
                import asyncio
                task = asyncio.ensure_future(spin())
                while not foreign.has_waker:
                    await asyncio.sleep(0)
                foreign.start()
                for _ in range(100):
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
            else:
                import trio
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(spin)
                    while not foreign.has_waker:
                        await trio.lowlevel.checkpoint()
                    foreign.start()
                    for _ in range(100):
                        await trio.lowlevel.checkpoint()
                    nursery.cancel_scope.cancel()

        {runner}.run(main{'()' if runner == 'asyncio' else ''})
        """
    )

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
        # Called by hand for a task that does not wait in the trap (this one, which runs):
        # nothing can reschedule such a task (a wake-up looks where its task waits first), so
        # an abort always succeeds.
        assert trap.abort_func(lambda: None) is trio.lowlevel.Abort.SUCCEEDED
        # An aborted suspension must never reschedule the task that parked (this one, which
        # is running): trio would fail the run.
        stash.wake()
        stash.wake_from_threads(50, 2)
        await trio.lowlevel.checkpoint()
        del coroutine
        # Gone, the coroutine can wake nobody: an abort now is the task's only way out.
        assert trap.abort_func(lambda: None) is trio.lowlevel.Abort.SUCCEEDED


async def test_trio_abort_from_inside_another_coroutines_poll(loop_name):
    """A parked coroutine's abort function, called from inside another coroutine's poll (whose
    driver is borrowed): no deadlock, no panic; SUCCEEDED both times, since the task it is
    asked about (this one, which runs) does not wait in the trap and nothing can reschedule it.
    (Its own abort from inside its own poll is out of reach: `suspend_once` is a trio
    checkpoint on trio.)"""
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
    assert answers == [trio.lowlevel.Abort.SUCCEEDED] * 2
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


# =============================================================================================
# Round 5, CPython 3.14 (abi3 first, then the full build), on asyncio, uvloop, trio and anyio:
# the lent waker of a poll (`PollWaker`, `DriverFlags::WAITER_USED`: a waiter never used takes
# no lock), scripted poll by poll (`m.Scripted`, pytests/src/attack5.rs); the coroutine's one
# word of label and flags (`MarkedLabel`) across `__class__` moves, Python subclasses, copies,
# weak references and threads racing `__await__`; 3.14's asyncio call graphs and eager tasks;
# trio's abort of a coroutine closed under its task.
# =============================================================================================

from helpers import ABI3  # noqa: E402

WAKES = [
    ["wake"],
    ["clone_wake"],
    ["clone_wake_ref"],
    ["thread_wake"],
    ["thread_clone_wake"],
    ["threads_storm"],
    ["late_thread_wake"],
    ["late_thread_spin"],
    ["clone_drop", "wake"],
    ["wake", "clone_drop"],
    ["keep", "wake_kept"],
    ["keep", "wake_kept_by_value"],
    ["wake", "wake", "thread_wake", "clone_wake"],
]
NO_WAKE = [[], ["clone_drop"], ["clone_clone_drop"], ["thread_clone_drop"], ["keep"]]


@pytest.mark.parametrize("actions", WAKES, ids="+".join)
async def test_a_wake_of_the_lent_waker_in_the_first_poll_resumes_exactly_once(loop_name, actions):
    """However the first poll's waker is woken (borrowed, through a clone by value or by
    reference, from other threads during the poll, after it from a thread), the coroutine is
    resumed once: exactly two polls, the payload gone with it."""
    for _ in range(20):
        scripted, payload = m.Scripted(), Payload()
        ref = weakref.ref(payload)
        with anyio.fail_after(10):
            assert await scripted.run([(actions, "pending")], payload) == 2
        del payload
        scripted.join()
        assert scripted.polls == 2, "one wake-up per suspension, however many wakes"
        assert ref() is None
        assert scripted.wake_kept() >= 0  # late wakes of a finished coroutine: nothing
        await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize("actions", NO_WAKE, ids=lambda a: "+".join(a) or "nothing")
async def test_a_first_poll_that_arranges_no_wake_is_never_resumed(loop_name, actions):
    """A clone made and dropped (counted as kept) or kept but never woken: the task parks and
    nothing resumes it (no stale 'woken' read from a waiter left in its first state); it ends
    by cancellation, its future dropped."""
    scripted, payload = m.Scripted(), Payload()
    ref = weakref.ref(payload)
    coroutine = scripted.run([(actions, "pending")], payload)
    del payload
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:

            async def wait():
                await coroutine

            group.start_soon(wait)
            for _ in range(50):
                await anyio.lowlevel.checkpoint()
            assert scripted.polls == 1, "resumed without a wake"
            scope.cancel()
    assert scope.cancelled_caught
    del coroutine, wait
    gc.collect()
    assert ref() is None
    assert scripted.drop_kept() == actions.count("keep")


@pytest.mark.parametrize("outcome", ["ready", "error", "panic"])
@pytest.mark.parametrize("actions", [["wake"], ["keep"], ["late_thread_spin"], ["threads_storm"]], ids="+".join)
async def test_a_first_poll_that_wakes_then_ends(loop_name, actions, outcome):
    """Woken (or a waker kept) and finished in the same poll: the coroutine's end is its
    outcome; wakes that follow do nothing; the payload goes."""
    scripted, payload = m.Scripted(), Payload()
    ref = weakref.ref(payload)
    coroutine = scripted.run([(actions, outcome)], payload)
    del payload
    if outcome == "ready":
        assert await coroutine == 1
    else:
        with pytest.raises((ValueError, BaseException)) as raised:
            await coroutine
        if outcome == "error":
            assert raised.type is ValueError
        else:
            assert "scripted panic" in str(raised.value)
    scripted.wake_kept()
    scripted.join()
    for _ in range(5):
        await anyio.lowlevel.checkpoint()
    assert scripted.polls == 1
    assert ref() is None
    del coroutine


async def test_a_long_script_of_wakes_polls_exactly_as_often_as_it_says(loop_name):
    """Each suspension gets one wake-up: kept wakers from earlier polls (which never claim to
    wake the lent one), woken during later polls, clones dropped, storms from threads."""
    script = [
        (["keep", "late_thread_wake"], "pending"),
        (["will_wake_kept", "wake_kept"], "pending"),
        (["clone_drop", "wake"], "pending"),
        (["threads_storm"], "pending"),
        (["keep", "will_wake_kept", "late_thread_spin"], "pending"),
        (["wake_kept_by_value"], "pending"),
        ([], "ready"),
    ]
    for _ in range(20):
        scripted = m.Scripted()
        with anyio.fail_after(10):
            assert await scripted.run(script) == len(script)
        scripted.join()
        assert scripted.polls == len(script)


async def test_many_tasks_whose_first_poll_wakes_from_threads(loop_name):
    """Hundreds of tasks at once, each woken from threads during its first poll."""
    scripted = m.Scripted()
    results = []
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for i in range(200):
                actions = WAKES[i % len(WAKES)]

                async def one(actions=actions):
                    results.append(await scripted.run([(actions, "pending"), (["wake"], "pending")]))

                group.start_soon(one)
    scripted.join()
    assert results == [3] * 200
    assert scripted.polls == 600


async def python_value():
    await anyio.lowlevel.checkpoint()
    return 7


@pytest.mark.parametrize(
    "actions", [[], ["wake"], ["clone_drop"], ["keep"], ["thread_wake"], ["late_thread_spin"]], ids=lambda a: "+".join(a) or "nothing"
)
async def test_a_python_awaitable_polled_beside_the_lent_waker(loop_name, actions):
    """The delegation rule reads the PollWaker's report: with a wake or a clone in the same
    poll the awaitable runs as a task instead; either way its result arrives, once."""
    scripted = m.Scripted()
    for _ in range(10):
        with anyio.fail_after(10):
            assert await scripted.around_py(python_value(), actions) == 7
    scripted.join()
    scripted.drop_kept()


async def test_trio_cancellation_of_a_task_whose_first_poll_woke_from_a_thread(loop_name):
    """The first poll wakes from a late thread, the later ones park for ever: cancellation
    (trio's abort, asyncio's cancel) must end the task, never a reschedule after the abort.

    The late thread's wakes may go on after the first resumption: a waker wakes its task, not
    one poll, so they may resume the second suspension too (`late_thread_spin` wakes a thousand
    times). Every later step stays pending, so that is legal and changes nothing: the task
    still ends only by its cancellation."""
    stay_pending = [(["keep"], "pending")] + [([], "pending")] * 1_100
    for actions in (["late_thread_spin"], ["late_thread_wake"], ["wake"], ["threads_storm"]):
        for _ in range(10):
            scripted, payload = m.Scripted(), Payload()
            ref = weakref.ref(payload)
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as group:

                    async def wait(payload=payload):
                        await scripted.run([(actions, "pending")] + stay_pending, payload)
                        raise AssertionError("the script ran out: a poll for every wake?")

                    group.start_soon(wait)
                    del payload
                    await until(lambda: scripted.polls >= 2)
                    scope.cancel()
            assert scope.cancelled_caught
            scripted.join()
            del wait
            gc.collect()
            assert ref() is None
            polls = scripted.polls
            assert scripted.wake_kept() == 1  # after the coroutine went: nothing happens
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            assert scripted.polls == polls


async def test_eager_tasks_whose_first_poll_wakes(loop_name):
    """3.12+'s eager tasks run the first step inside `create_task`: the first poll's wake must
    still resume the task once."""
    if loop_name == "trio" or sys.version_info < (3, 12):
        pytest.skip("asyncio's eager task factory (3.12+)")
    loop = asyncio.get_running_loop()
    loop.set_task_factory(asyncio.eager_task_factory)
    try:

        async def probe():
            pass

        probing = probe()
        try:
            await asyncio.create_task(probing)
        except TypeError as refused:
            probing.close()
            # uvloop's `create_task` on 3.13.0 passes `eager_start`, which the factory refuses:
            # no eager task can start there, native or not.
            pytest.skip(f"this loop refuses asyncio's eager task factory: {refused}")
        scripted = m.Scripted()
        for actions in WAKES + [[]]:
            outcome = "pending" if actions else "ready"
            task = asyncio.create_task(scripted.run([(actions, outcome)]))
            assert await asyncio.wait_for(task, 10) == (2 if actions else 1)
        scripted.join()
        # Eager and ready at once: done before `create_task` returns, as a native coroutine
        # is (uvloop's `create_task` starts no task eagerly, native or not).

        async def native():
            return 1

        eager = asyncio.create_task(native()).done()
        task = asyncio.create_task(scripted.run([(["wake"], "ready")]))
        assert task.done() is eager
        assert await task == 1
    finally:
        loop.set_task_factory(None)


async def test_asyncio_call_graphs_through_rust_coroutines(loop_name):
    """3.14's `asyncio.capture_call_graph` / `print_call_graph` walk `cr_await` of the task's
    coroutine: a Rust coroutine delegating to Python code, or not."""
    if loop_name == "trio" or not hasattr(asyncio, "capture_call_graph"):
        pytest.skip("asyncio 3.14 call graphs")
    import io

    scripted = m.Scripted()
    release = asyncio.Event()

    async def inner():
        await release.wait()
        return 7

    for actions in ([], ["wake"], ["keep"]):
        release.clear()
        task = asyncio.ensure_future(scripted.around_py(inner(), actions))
        for _ in range(5):
            await asyncio.sleep(0)
        graph = asyncio.capture_call_graph(task)
        assert graph is not None
        out = io.StringIO()
        asyncio.print_call_graph(task, file=out)
        assert "Task" in out.getvalue() or "task" in out.getvalue()
        if not actions:
            # Delegated: the Python coroutine is the Rust one's `cr_await`.
            assert any(entry.frame.f_code.co_name == "inner" for entry in graph.call_stack)
        release.set()
        assert await task == 7
    scripted.drop_kept()


# ---- the one word of label and flags ---------------------------------------------------------


def awaited_class():
    coroutine = m.ready(0)
    coroutine.__await__()
    coroutine.close()
    return type(coroutine)


def test_copies_and_pickles_of_a_coroutine_are_refused_in_every_state():
    import copy
    import pickle

    for state in ("new", "awaited", "closed"):
        coroutine = m.relabelled([("qualname", "Q.copied")], 1)
        if state == "awaited":
            coroutine.__await__()
        elif state == "closed":
            coroutine.close()
        for attempt in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError):
                attempt(coroutine)
        assert coroutine.__qualname__ == "Q.copied"
        coroutine.close()


def test_a_weakref_callback_sees_the_coroutine_go_with_its_waker_alive():
    """The coroutine goes while a waker lives: its weakref callback runs; the payload went
    before; waking and dropping the waker afterwards do nothing."""
    called = []
    scripted, payload = m.Scripted(), Payload()
    payload_ref = weakref.ref(payload)
    coroutine = scripted.run([(["keep"], "pending")], payload)
    del payload
    ref = weakref.ref(coroutine, lambda _: called.append(payload_ref() is None))
    try:
        coroutine.send(None)
    except Exception:  # noqa: BLE001 - no loop: refusing is fine
        pass
    del coroutine
    assert ref() is None and len(called) == 1
    assert payload_ref() is None
    assert scripted.wake_kept() == 1
    assert scripted.drop_kept() == 1


@pytest.mark.skipif(not ABI3, reason="the awaited class exists under the limited API only")
async def test_class_moves_between_the_pyo3_class_and_the_awaited_class(loop_name):
    """`__class__` can be assigned both ways (both classes are mutable, of one layout): the
    flags stay in the word, so an unawaited coroutine moved into the awaited class is awaited
    once, and a claimed one moved back still refuses a second await."""
    awaited = awaited_class()
    base = awaited.__mro__[1]
    assert awaited is not base and issubclass(awaited, base)

    fresh = m.relabelled([("qualname", "Moved.in")], 5)
    fresh.__class__ = awaited
    assert fresh.__qualname__ == "Moved.in"
    assert await fresh == 5
    with pytest.raises(RuntimeError):
        await fresh

    claimed = m.relabelled([("qualname", "Moved.out")], 6)
    assert claimed.__await__() is claimed
    claimed.__class__ = base
    with pytest.raises(RuntimeError, match="awaited already"):
        await claimed
    with pytest.warns(RuntimeWarning, match="'Moved.out' was never awaited"):
        del claimed
        gc.collect()

    # Back and forth while suspended in a task: the task's next step finds it either way.
    scripted = m.Scripted()
    coroutine = scripted.run([(["keep"], "pending")])
    async with anyio.create_task_group() as group:

        async def wait():
            return await coroutine

        group.start_soon(wait)
        await until(lambda: scripted.polls == 1)
        coroutine.__class__ = base
        scripted.wake_kept()
        await until(lambda: scripted.polls == 2)
    del coroutine, wait
    scripted.drop_kept()


@pytest.mark.skipif(not ABI3, reason="Python subclasses of the coroutine class: limited API")
async def test_a_python_subclass_of_the_coroutine_class(loop_name):
    """The limited API build lets Python subclass the PyO3 class (no instances of its own);
    a coroutine moved into one (`__slots__ = ()`: same layout) keeps its label and flags, is
    awaited once (moved on into the awaited class), and its warning names its label."""
    base = awaited_class().__mro__[1]

    class Sub(base):
        __slots__ = ()

    with pytest.raises(TypeError):
        Sub()
    coroutine = m.relabelled([("qualname", "Sub.co")], 3)
    coroutine.__class__ = Sub
    assert isinstance(coroutine, Sub) and coroutine.__qualname__ == "Sub.co"
    assert await coroutine == 3
    with pytest.raises(RuntimeError):
        await coroutine

    unawaited = m.relabelled([("qualname", "Sub.never")], 3)
    unawaited.__class__ = Sub
    with pytest.warns(RuntimeWarning, match="'Sub.never' was never awaited"):
        del unawaited
        gc.collect()


def test_threads_racing_await_claim_it_once():
    """`MarkedLabel::claim` is one atomic word: of threads calling `__await__` together, one
    wins; the others are told it is awaited already."""
    for _ in range(200):
        coroutine = m.relabelled([("qualname", "Raced")], 1)
        barrier = threading.Barrier(4)
        results = []

        def claim():
            barrier.wait()
            try:
                coroutine.__await__()
                results.append("ok")
            except RuntimeError:
                results.append("refused")
            except ValueError:
                results.append("executing")

        threads = [threading.Thread(target=claim) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == ["ok", "refused", "refused", "refused"], results
        coroutine.close()


def test_close_racing_await_and_send_from_threads():
    """`close` sets RAN without claiming, `__await__` claims, `send` does both: raced from
    threads, no crash, and the coroutine ends closed, quiet when dropped."""
    for _ in range(200):
        coroutine = m.relabelled([("qualname", "Raced.close")], 1)
        barrier = threading.Barrier(3)
        errors = []

        def step(action):
            barrier.wait()
            try:
                action()
            except (RuntimeError, ValueError, StopIteration):
                pass
            except BaseException as error:  # noqa: BLE001
                errors.append(error)

        actions = (coroutine.close, coroutine.__await__, lambda: coroutine.send(None))
        threads = [threading.Thread(target=step, args=(action,)) for action in actions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        coroutine.close()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            del coroutine
            gc.collect()


# ---- trio's abort of a coroutine closed under its task ---------------------------------------


@pytest.mark.parametrize("runner", ["trio", "asyncio"])
def test_a_task_parked_on_a_coroutine_another_task_closes_can_still_be_cancelled(runner):
    """Task A awaits a Rust coroutine that parks for ever; task B closes it. A native coroutine
    closed so leaves A cancellable (trio's abort succeeds). Cancelling A must end it: a closed
    waiter answering FAILED to trio's abort would leave A parked for ever (the run hangs)."""
    out = run_script(
        f"""
        import {runner}
        import pyo3_async_pytests as m

        scripted = m.Scripted()

        async def main():
            coroutine = scripted.run([(["keep"], "pending")])
            if "{runner}" == "trio":
                import trio
                with trio.move_on_after(5) as outer:
                    async with trio.open_nursery() as nursery:
                        async def a():
                            # As with a native coroutine: the cancellation thrown into the
                            # closed coroutine ends A with "cannot reuse already awaited".
                            try:
                                await coroutine
                            except RuntimeError as error:
                                print("A:", error)
                        nursery.start_soon(a)
                        while scripted.polls < 1:
                            await trio.lowlevel.checkpoint()
                        coroutine.close()
                        nursery.cancel_scope.cancel()
                print("timed out" if outer.cancelled_caught else "ended")
            else:
                import asyncio
                task = asyncio.ensure_future(coroutine)
                while scripted.polls < 1:
                    await asyncio.sleep(0)
                coroutine.close()
                task.cancel()
                try:
                    await asyncio.wait_for(task, 5)
                except asyncio.CancelledError:
                    print("A: Cancelled")
                except TimeoutError:
                    print("timed out")
                except BaseException as error:
                    print("A:", type(error).__name__)
                print("ended")

        {runner}.run(main{'()' if runner == 'asyncio' else ''})
        """,
        timeout=20,
        forbidden=("panic", "fatal python error"),
    )
    assert "ended" in out and "timed out" not in out, out
    if runner == "trio":
        assert "A: cannot reuse already awaited coroutine" in out, out

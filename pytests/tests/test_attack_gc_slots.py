"""Attack on the raw type slots: `tp_traverse` of `Coroutine` and `WakeupFuture` (src/visit.rs),
the abi3 awaited subclass (src/rust_to_py/slot_class.rs) and `tp_iternext`
(src/rust_to_py/send_slot.rs), which 3.12+ uses to resume `await` on a Rust coroutine.

The collector must see exactly what is held (never more: that frees live objects), collect the
cycles a native coroutine would let it collect, and an `await` must hand back every result,
`None` and falsy ones and `StopIteration` instances included, and never let `StopIteration` out.
"""

import asyncio
import contextvars
import gc
import sys
import threading
import types
import warnings
import weakref

import anyio
import pytest
import trio

import pyo3_async_pytests as m
from helpers import ABI3, forgotten_tasks, freed, run_script, start_forgotten, until


# Results that a careless slot could turn into None, drop, or unwrap.
RESULTS = [None, 0, False, (), (None,), (1, 2), [], "", 0.0, StopIteration, StopIteration(7)]
RESULT_IDS = [
    "None", "0", "False", "empty-tuple", "tuple-None", "tuple", "list", "str", "float",
    "StopIteration-class", "StopIteration-instance",
]


# ---- helpers ----


def reported_and_held(holder):
    """How many times the tracked objects report `holder[0]` to the collector, and how many
    references it has besides this function's. `holder` must be the caller's only way to the
    object (a list, itself tracked and counted)."""
    target = holder[0]
    reported = 0
    for other in gc.get_objects():
        # Modules are skipped (their `__dict__` is scanned as a dict of its own): CPython
        # 3.12's `_asyncio` reports its free list of future iterators, dead objects that
        # `gc.get_referents` would resurrect, corrupting the list (a pure-Python program
        # does it too).
        if isinstance(other, types.ModuleType):
            continue
        for referent in gc.get_referents(other):
            if referent is target:
                reported += 1
    del other, referent
    held = sys.getrefcount(target) - _OWN_REFS
    return reported, held


def _own_refs():
    """What `sys.getrefcount` adds inside `reported_and_held` on this Python (its local, its
    argument; 3.14 borrows the argument): measured on an object with one known reference."""
    probe = [object()]
    target = probe[0]
    return sys.getrefcount(target) - 1


_OWN_REFS = _own_refs()


def assert_not_over_reported(holder):
    reported, held = reported_and_held(holder)
    assert reported <= held, f"{holder[0]!r}: reported {reported} times, {held} references"


async def park_once_in_default_context():
    """Parks and wakes one Rust coroutine, so that this loop's home exists before the test
    makes contexts of its own (see `test_the_loop_watcher_keeps_no_task_context_alive`)."""
    trigger = m.Trigger()
    asyncio.get_running_loop().call_soon(trigger.fire)
    await trigger.wait()


def coroutines_alive():
    return sum(isinstance(o, m.Coroutine) for o in gc.get_objects())


def switched():
    """Makes sure the first `await` of a Rust coroutine happened in this process (full API: the
    slots are installed then; a task alone, driving it through `tp_iternext`, does not)."""

    async def awaits():
        return await m.echo(None)

    asyncio.run(awaits())


# ---- tp_traverse: what the collector is told ----


def test_a_fresh_coroutine_reports_its_class_and_is_tracked():
    c = m.echo(1)
    try:
        assert gc.is_tracked(c)
        assert gc.get_referents(c) == [type(c)]
        # Under abi3 an exported function's coroutine is made in its awaited class.
        assert (type(c) is m.Coroutine) == (not ABI3)
        assert type(c).__mro__[ABI3] is m.Coroutine
    finally:
        c.close()
    assert gc.is_tracked(c)
    assert gc.get_referents(c) == [type(c)]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: m.echo(1), id="exported async fn"),
        pytest.param(lambda: m.await_all([]), id="plain pyfunction"),
        pytest.param(lambda: m.count(1, None).aclose(), id="pymethod"),
    ],
)
def test_every_coroutine_handed_to_python_is_made_where_await_is_fast(make):
    # Whoever returns it, a coroutine is made in its awaited class (under abi3), so `await`
    # finds the fast slots at once; PyO3's `__await__` would move it only then, too late to
    # let its result reuse the spare StopIteration.
    c = make()
    try:
        assert (type(c) is m.Coroutine) == (not ABI3)
        assert type(c).__mro__[ABI3] is m.Coroutine
    finally:
        c.close()


@pytest.mark.anyio
async def test_a_parked_coroutine_reports_its_class_and_its_future(loop_name):
    trigger = m.Trigger()
    c = trigger.wait("done")
    if loop_name == "trio":
        async with trio.open_nursery() as nursery:
            results = []

            async def runner():
                results.append(await c)

            nursery.start_soon(runner)
            await until(lambda: c.cr_suspended)
            referents = gc.get_referents(c)
            assert referents[0] is type(c)
            # trio's trap is no object; a trio coroutine it passed a trap on for would be.
            awaited = c.cr_await
            assert all(r is type(c) or r is awaited for r in referents), referents
            assert gc.is_tracked(c)
            trigger.fire()
        assert results == ["done"]
        return
    task = asyncio.ensure_future(c)
    await until(lambda: task._fut_waiter is not None)
    future = task._fut_waiter
    referents = gc.get_referents(c)
    assert referents[0] is type(c)
    assert any(r is future for r in referents)
    assert all(r is type(c) or r is future for r in referents), referents
    # The future reports its class and the task's wake-up (a bound method of the task).
    future_referents = gc.get_referents(future)
    assert future_referents[0] is type(future)
    assert any(getattr(r, "__self__", None) is task for r in future_referents)
    assert gc.is_tracked(future)
    assert any(r is task for r in gc.get_referrers(c))
    assert any(r is c for r in gc.get_referrers(future))
    trigger.fire()
    assert await task == "done"
    # Finished: nothing but the class.
    assert gc.get_referents(c) == [type(c)]


@pytest.mark.anyio
async def test_nothing_is_reported_more_often_than_it_is_held(loop_name):
    forgotten_tasks(loop_name)
    loop = asyncio.get_running_loop()

    async def inner():
        await loop.create_future()

    tasks = [
        asyncio.ensure_future(m.pending_forever(m.Probe())),
        asyncio.ensure_future(m.delegate_to(inner())),
        asyncio.ensure_future(m.awaits_its_own_future()),
    ]
    await until(lambda: all(t._fut_waiter is not None for t in tasks))
    for task in tasks:
        coroutine = [task.get_coro()]
        assert_not_over_reported(coroutine)
        assert_not_over_reported([task._fut_waiter])
        awaited = [coroutine[0].cr_await]
        del coroutine
        assert_not_over_reported(awaited)
        assert_not_over_reported([task])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.anyio
async def test_a_coroutine_delegating_to_a_python_coroutine_that_holds_it_is_collected(loop_name):
    # Rust coroutine -> delegated native coroutine -> its frame -> the box -> the Rust coroutine.
    forgotten_tasks(loop_name)
    loop = asyncio.get_running_loop()
    count = 200

    def make_ours():
        box = {}

        async def inner():
            assert box["outer"] is not None
            await loop.create_future()

        box["outer"] = m.await_py(inner())
        return box["outer"]

    def make_native():
        box = {}

        async def inner():
            assert box["outer"] is not None
            await loop.create_future()

        async def outer(awaitable):
            return await awaitable

        box["outer"] = outer(inner())
        return box["outer"]

    alive = coroutines_alive()
    ours = await start_forgotten(make_ours, count)
    native = await start_forgotten(make_native, count)
    assert (freed(ours), freed(native)) == (count, count)
    assert coroutines_alive() <= alive


@pytest.mark.anyio
async def test_weakref_callbacks_of_collected_coroutines_run_once(loop_name):
    forgotten_tasks(loop_name)
    count = 100
    called = []
    probes = [m.Probe() for _ in range(count)]
    coroutine_refs = []

    def make():
        coroutine = m.pending_forever(probes[len(coroutine_refs)])
        coroutine_refs.append(weakref.ref(coroutine, called.append))
        return coroutine

    task_refs = await start_forgotten(make, count)
    assert freed(task_refs) == count
    assert len(called) == count
    assert all(ref() is None for ref in coroutine_refs)
    assert all(probe.dropped for probe in probes)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="create_task(context=) is 3.11's")
@pytest.mark.anyio
async def test_a_task_resurrected_by_a_finaliser_in_its_cycle_still_completes(loop_name):
    # A forgotten task whose context holds an object whose `__del__` saves the task: the
    # collector finalises, finds the cycle resurrected and must clear nothing of it (the Rust
    # coroutine's driver, the future it awaits). Resolving that future then completes the task.
    forgotten_tasks(loop_name)
    await park_once_in_default_context()
    loop = asyncio.get_running_loop()
    saved = []
    var = contextvars.ContextVar("resurrector")

    class Resurrector:
        def __del__(self):
            saved.append(self.task)

    def forget_and_resurrect(make):
        context = contextvars.copy_context()
        resurrector = Resurrector()
        context.run(var.set, resurrector)
        task = loop.create_task(make(), context=context)
        resurrector.task = task
        return weakref.ref(task)

    # Parked on a Python future through delegation: the future's result completes it.
    dropped = m.futures_dropped()
    ref = forget_and_resurrect(m.awaits_its_own_future)
    await until(lambda: ref()._fut_waiter is not None)
    gc.collect()
    # The finaliser ran (the cycle was garbage) and saved the task; whether the weak reference
    # was cleared first depends on the Python (up to 3.14 it was, from 3.15 it is not).
    assert len(saved) == 1
    task = saved.pop()
    assert not task.done() and task.get_coro().cr_suspended
    assert m.futures_dropped() == dropped  # not closed by the collector
    task._fut_waiter.set_result(None)
    assert await task is None
    assert m.futures_dropped() == dropped + 1

    # Parked on its `WakeupFuture`: the future kept its callback (the task's wake-up), and
    # the task can be cancelled.
    ref = forget_and_resurrect(m.parks_forever)
    await until(lambda: ref()._fut_waiter is not None)
    gc.collect()
    assert len(saved) == 1
    task = saved.pop()
    assert any(getattr(r, "__self__", None) is task for r in gc.get_referents(task._fut_waiter))
    assert m.futures_dropped() == dropped + 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert m.futures_dropped() == dropped + 2
    # (A native coroutine in the same cycle is closed by its own finaliser: no comparison.)


@pytest.mark.anyio
async def test_a_collection_inside_a_rust_poll_frees_forgotten_cycles(loop_name):
    # `gc.collect()` runs inside the poll of a coroutine (whose own traversal is then locked),
    # with parked and forgotten Rust coroutines around: they are freed, the polling one
    # finishes with both results.
    count = 100
    if loop_name != "trio":
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
        refs = await start_forgotten(m.parks_forever, count)
    else:
        refs = []

    def collect():
        return gc.collect() >= 0 and sum(ref() is None for ref in refs)

    first, second = await m.call_during_poll(collect)
    assert (first, second) == (len(refs), len(refs))


@pytest.mark.anyio
async def test_referents_asked_from_inside_the_coroutines_own_poll(loop_name):
    # Its driver is borrowed by the poll: it reports its class alone, and nothing breaks.
    box = []

    def referents():
        return [r is type(box[0]) for r in gc.get_referents(box[0])]

    box.append(m.call_during_poll(referents))
    assert await box[0] == ([True], [True])
    assert gc.get_referents(box[0]) == [type(box[0])]


@pytest.mark.anyio
async def test_a_collection_inside_a_delegated_python_coroutine(loop_name):
    # The delegated coroutine runs inside the Rust coroutine's poll; it collects there, before
    # and after a suspension, while it holds the Rust coroutine in a cycle.
    box = {}
    dead = []

    async def inner():
        holder = box  # the delegated frame holds the Rust coroutine through the box
        for _ in range(2):
            junk = [None]
            junk[0] = junk
            dead.append(weakref.ref(m.echo(1), lambda ref: None))
            gc.collect()
            await anyio.lowlevel.checkpoint()
        return holder["outer"] is not None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        box["outer"] = m.delegate_to(inner())
        assert await box["outer"] is True
    outer = weakref.ref(box.pop("outer"))
    gc.collect()
    assert outer() is None
    assert all(ref() is None for ref in dead)


@pytest.mark.anyio
async def test_collections_in_a_thread_while_polls_run_detached(loop_name):
    # The loop's thread polls with the interpreter released (`AllowThreads`) and blocks there,
    # holding its coroutine's driver: another thread collects meanwhile, over and over, with
    # other coroutines parked.
    latch = m.Latch()
    errors = []
    stop = threading.Event()
    collections = []

    def collector():
        try:
            latch.wait_blocked()
            for _ in range(20):
                gc.collect()
                collections.append(1)
            latch.set()
            while not stop.is_set():
                gc.collect()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
            latch.set()

    triggers = [m.Trigger() for _ in range(20)]
    results = []
    async with anyio.create_task_group() as group:

        async def waiter(i, trigger):
            results.append((i, await trigger.wait(i)))

        for i, trigger in enumerate(triggers):
            group.start_soon(waiter, i, trigger)
        thread = threading.Thread(target=collector)
        thread.start()
        assert await m.block_on_latch(latch, 30.0, True) is True
        for trigger in triggers:
            trigger.fire_from_thread()
            await anyio.lowlevel.checkpoint()
    stop.set()
    thread.join(30)
    assert not errors
    assert len(collections) == 20
    assert sorted(results) == [(i, i) for i in range(20)]


@pytest.mark.anyio
async def test_collector_churn_with_threshold_one(loop_name):
    # Ten thousand coroutines made, awaited, parked and forgotten, with a collection at every
    # allocation: nothing crashes, no result is lost, the forgotten ones are freed.
    thresholds = gc.get_threshold()
    gc.set_threshold(1)
    try:
        total = 0
        for i in range(2_500):
            total += await m.echo(i)
            assert await m.echo(None) is None
        assert total == sum(range(2_500))
        if loop_name != "trio":
            asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
            refs = []
            for _ in range(10):
                refs += await start_forgotten(m.parks_forever, 1_000)
            assert freed(refs) == len(refs)
    finally:
        gc.set_threshold(*thresholds)


def test_an_unawaited_coroutine_in_garbage_is_freed_and_its_future_dropped():
    # Before its first await (no slot subclass under abi3; PyO3's traversal): held by a
    # garbage cycle, it goes with the cycle.
    class Node:
        pass

    probes = [m.Probe() for _ in range(100)]
    refs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for probe in probes:
            a, b = Node(), Node()
            a.b, b.a = b, a
            a.coroutine = m.pending_forever(probe)
            refs.append(weakref.ref(a.coroutine))
        del a, b
        assert freed(refs) == 100
    assert all(probe.dropped for probe in probes)


def test_the_slot_switch_with_coroutines_parked_before_it():
    # A fresh process: tasks are parked on Rust coroutines by asyncio's task alone (PyIter_Send,
    # no `await`), so PyO3's `tp_traverse` and `__next__` serve them; a first `await` then
    # installs the slots (full API; so would making an exported function's coroutine); the parked, forgotten tasks are then collected through the
    # new traversal, their futures dropped.
    out = run_script(
        """
        import asyncio, gc, weakref
        import pyo3_async_pytests as m

        def next_args(value):
            # A plain coroutine: an exported function's would install the slots.
            try:
                next(m.ready(value))
            except StopIteration as stop:
                return stop.args

        async def main():
            asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
            before = next_args(None)
            probes = [m.Probe() for _ in range(50)]
            tasks = [asyncio.ensure_future(m.pending_forever(p)) for p in probes]
            await asyncio.sleep(0)
            assert all(t._fut_waiter is not None for t in tasks)
            referents = [len(gc.get_referents(t.get_coro())) for t in tasks]
            refs = [weakref.ref(t) for t in tasks]
            del tasks
            assert await m.ready(5) == 5  # the first await
            after = next_args(None)
            gc.collect()
            print(before, after, referents[0], sum(r() is None for r in refs),
                  sum(p.dropped for p in probes))

        asyncio.run(main())
        """
    )
    # A `None` result ends the iterator with a bare `StopIteration`, as a native coroutine's
    # does: through PyO3's `__next__` before the slots, through `tp_iternext` after.
    assert out.split() == ["()", "()", "3", "50", "50"], out


@pytest.mark.anyio
async def test_no_coroutine_or_class_reference_leaks_through_the_awaited_class(loop_name):
    # Under abi3 the coroutine lives in the slot subclass (an exported function makes it
    # there; `await` moves any other): it must stay tracked, report that class, be collected
    # with its cycles, and give the class reference back.
    c = m.echo(1)
    assert (type(c) is m.Coroutine) == (not ABI3)
    iterator = c.__await__()
    awaited_class = type(c)
    assert iterator is c
    assert (awaited_class is m.Coroutine) == (not ABI3)
    assert isinstance(c, m.Coroutine)
    assert awaited_class.__name__ == "Coroutine"
    assert awaited_class.__module__ == m.Coroutine.__module__
    assert gc.is_tracked(c)
    assert gc.get_referents(c) == [awaited_class]
    with pytest.raises(StopIteration) as stop:
        c.send(None)
    assert stop.value.value == 1
    del c, iterator, stop

    gc.collect()
    class_refs = sys.getrefcount(awaited_class)
    alive = coroutines_alive()
    for i in range(1_000):
        assert await m.echo(i) == i
    trigger = m.Trigger()

    async def awaits(i):
        return await trigger.wait(i)

    if loop_name == "trio":
        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(awaits, i)
            await anyio.lowlevel.checkpoint()
            trigger.fire()
    else:
        forgotten_tasks(loop_name)
        refs = await start_forgotten(m.parks_forever, 100)
        assert freed(refs) == 100
        trigger.fire()
    gc.collect()
    assert coroutines_alive() == alive
    assert sys.getrefcount(awaited_class) == class_refs


@pytest.mark.parametrize("loop_module", ["asyncio", "uvloop"])
def test_the_loop_watcher_keeps_no_task_context_alive(loop_module):
    runner = __import__(loop_module).run
    var = contextvars.ContextVar("request")

    class Request:
        pass

    async def main(rust):
        trigger = m.Trigger()
        future = asyncio.get_running_loop().create_future()

        async def handler():
            var.set(Request())
            await (trigger.wait() if rust else future)

        task = asyncio.create_task(handler())
        await until(lambda: task._fut_waiter is not None)
        trigger.fire()
        future.set_result(None)
        await task
        del task
        for _ in range(3):  # the task's done callbacks run
            await asyncio.sleep(0)
        gc.collect()
        return sum(isinstance(o, Request) for o in gc.get_objects())

    # A new loop each time (its home, and its watcher, are new).
    assert [runner(main(False)), runner(main(True))] == [0, 0]


def test_the_trio_watcher_keeps_no_task_context_alive():
    var = contextvars.ContextVar("request")

    class Request:
        pass

    async def main():
        trigger = m.Trigger()
        waiting = trigger.wait()

        async def handler():
            var.set(Request())
            await waiting

        async with trio.open_nursery() as nursery:
            nursery.start_soon(handler)
            await until(lambda: waiting.cr_suspended)
            trigger.fire()
        del waiting
        gc.collect()
        return sum(isinstance(o, Request) for o in gc.get_objects())

    assert trio.run(main) == 0


# ---- the class of a coroutine ----


def test_the_class_cannot_be_subclassed_with_the_full_api():
    if ABI3:
        pytest.skip("abi3: the class allows subclasses (its awaited class is one)")
    with pytest.raises(TypeError):

        class Sub(m.Coroutine):
            pass


@pytest.mark.skipif(not ABI3, reason="abi3 only: the awaited subclass")
def test_abi3_a_python_subclass_has_no_instances_and_class_moves_are_safe():
    class Sub(m.Coroutine):
        __slots__ = ()

    with pytest.raises(TypeError):
        Sub()

    # The awaited class cannot be subclassed further.
    c = m.echo(1)
    c.__await__()
    awaited_class = type(c)
    with pytest.raises(TypeError):

        class Deeper(awaited_class):
            pass

    # Same layout: CPython lets an awaited coroutine move into the Python subclass; it keeps
    # working (through PyO3's slots), traversing and collecting.
    sub_refs = sys.getrefcount(Sub)
    c.__class__ = Sub
    assert gc.get_referents(c) == [Sub]
    with pytest.raises(StopIteration) as stop:
        c.send(None)
    assert stop.value.value == 1
    del c, stop

    # A fresh coroutine moved into the subclass, then awaited: `__await__` moves it on.
    async def main():
        c = m.echo(2)
        c.__class__ = Sub
        result = await c
        return result, type(c)

    assert asyncio.run(main()) == (2, awaited_class)
    gc.collect()
    assert sys.getrefcount(Sub) == sub_refs


@pytest.mark.skipif(not ABI3, reason="abi3 only: the awaited subclass")
@pytest.mark.anyio
async def test_abi3_a_parked_coroutine_moved_out_of_its_awaited_class(loop_name):
    # Parked inside `await` (so in the awaited class), then moved into a Python subclass of the
    # same layout: the collector reports that class, and the wake-up still completes it
    # through PyO3's own slots.
    class Sub(m.Coroutine):
        __slots__ = ()

    trigger = m.Trigger()
    waiting = trigger.wait("woken")
    results = []

    async def awaits():
        results.append(await waiting)

    async with anyio.create_task_group() as group:
        group.start_soon(awaits)
        await until(lambda: waiting.cr_suspended)
        awaited_class = type(waiting)
        assert awaited_class is not m.Coroutine
        waiting.__class__ = Sub
        assert gc.get_referents(waiting)[0] is Sub
        gc.collect()
        trigger.fire()
    assert results == ["woken"]
    assert gc.get_referents(waiting) == [Sub]
    # And back: the awaited class takes it again (a finished coroutine).
    waiting.__class__ = awaited_class
    assert gc.get_referents(waiting) == [awaited_class]


def test_the_class_refuses_an_incompatible_layout():
    class Other:
        pass

    c = m.echo(1)
    with pytest.raises(TypeError):
        c.__class__ = Other
    c.__await__()
    with pytest.raises(TypeError):
        c.__class__ = Other
    c.close()


# ---- tp_iternext: `await` and by hand ----


@pytest.mark.anyio
@pytest.mark.parametrize("value", RESULTS, ids=RESULT_IDS)
async def test_await_returns_every_result(loop_name, value):
    assert await m.echo(value) is value
    # After a suspension: resumed by the loop, then the `await` resumes the coroutine.
    assert await m.sleep(0.001, value) is value
    trigger = m.Trigger()

    async def fire():
        trigger.fire()

    async with anyio.create_task_group() as group:
        group.start_soon(fire)
        assert await trigger.wait(value) is value


@pytest.mark.parametrize("value", RESULTS, ids=RESULT_IDS)
def test_results_through_asyncio_run_trio_and_anyio(value):
    assert asyncio.run(m.echo(value)) is value
    assert trio.run(m.echo, value) is value
    assert anyio.run(m.echo, value) is value
    assert anyio.run(m.echo, value, backend="trio") is value


@pytest.mark.anyio
async def test_stop_iteration_never_leaks_out_of_an_await(loop_name):
    for value in (StopIteration(1), StopIteration(), StopIteration(None), StopIteration):
        try:
            result = await m.echo(value)
        except StopIteration:  # pragma: no cover - the failure this test is about
            pytest.fail("StopIteration leaked out of await")
        assert result is value
    # A future failing with StopIteration: RuntimeError from it, as a native coroutine's.
    with pytest.raises(RuntimeError, match="coroutine raised StopIteration") as raised:
        await m.raise_stop_iteration(5)
    assert isinstance(raised.value.__cause__, StopIteration)
    assert raised.value.__cause__.value == 5

    async def native():
        raise StopIteration(5)

    with pytest.raises(RuntimeError, match="coroutine raised StopIteration"):
        await native()


@pytest.mark.anyio
async def test_exceptions_keep_their_identity_through_await(loop_name):
    for error in (ValueError("v"), KeyboardInterrupt(), SystemExit(3), GeneratorExit()):
        with pytest.raises(type(error)) as raised:
            await m.fail(error, False)
        assert raised.value is error
        with pytest.raises(type(error)) as raised:
            await m.fail(error, True)
        assert raised.value is error


@pytest.mark.parametrize("value", [None, 0, 5, (), (1,), StopIteration(3)], ids=repr)
def test_next_by_hand_as_a_native_coroutine(value):
    # `next()` and `__next__` go through `tp_iternext`: a None result ends the iteration with
    # no exception (`next` raises a bare StopIteration, `next(it, default)` gives the default),
    # exactly as a native coroutine's `__await__()` iterator does.
    switched()

    async def native(v):
        return v

    def outcome(step):
        try:
            return ("yield", step())
        except StopIteration as stop:
            return ("stop", stop.args, stop.value)

    def both(step):
        ours, theirs = m.echo(value), native(value)
        return step(ours.__await__()), step(theirs.__await__())

    ours, theirs = both(lambda it: outcome(lambda: next(it)))
    assert ours == theirs
    # The `__next__` method (PyO3's, not the slot): the same value.
    ours, theirs = both(lambda it: outcome(it.__next__))
    assert ours[0] == theirs[0] and (ours[2] is theirs[2] or ours[2] == theirs[2])
    ours, theirs = both(lambda it: next(it, "default"))
    assert ours == theirs
    # `send(None)`: the value is the same (the arguments may differ: (None,) for None).
    ours, theirs = both(lambda it: outcome(lambda: it.send(None)))
    assert ours[0] == theirs[0] == "stop"
    assert ours[2] is theirs[2] or ours[2] == theirs[2]


@pytest.mark.anyio
async def test_a_bare_yield_is_not_the_end(loop_name):
    # The future wakes itself: the coroutine yields None to the loop, which `tp_iternext`
    # returns as a value (not NULL, which would end the `await` with None).
    for times in (0, 1, 5):
        assert await m.yield_now(times) == times + 1


def test_a_bare_yield_by_hand_as_a_native_one():
    switched()

    @types.coroutine
    def native(times):
        for _ in range(times):
            yield None
        return times + 1

    def steps(iterator):
        out = []
        while True:
            try:
                out.append(("yield", next(iterator)))
            except StopIteration as stop:
                out.append(("stop", stop.value))
                return out

    async def by_hand():  # inside a task: the backend is detected at the first suspension
        return steps(m.yield_now(2).__await__()), steps(native(2))

    ours, theirs = asyncio.run(by_hand())
    assert ours == theirs == [("yield", None), ("yield", None), ("stop", 3)]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12+")
@pytest.mark.parametrize("value", RESULTS, ids=RESULT_IDS)
def test_eager_tasks(value):
    async def main():
        loop = asyncio.get_running_loop()
        loop.set_task_factory(asyncio.eager_task_factory)
        ready = loop.create_task(m.echo(value))
        assert ready.done()  # finished in its eager first step
        # Suspended until fired (a timer, however short, may be due by the end of a first poll
        # on a loaded machine: the eager step would then finish it).
        trigger = m.Trigger()
        suspended = loop.create_task(trigger.wait(value))
        assert not suspended.done()
        trigger.fire_from_thread()
        return ready.result(), await suspended

    ready, suspended = asyncio.run(main())
    assert ready is value and suspended is value


def test_a_finished_coroutine_resumed_by_next_raises_as_a_native_one():
    switched()

    async def native():
        return 1

    for make in (lambda: m.echo(1), native):
        c = make()
        iterator = c.__await__()
        with pytest.raises(StopIteration):
            next(iterator)
        with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
            next(iterator)


@pytest.mark.anyio
async def test_a_coroutine_resuming_itself_from_its_own_poll(loop_name):
    box = []

    def reenter():
        try:
            next(box[0])
        except ValueError as error:
            return str(error)
        return "no error"

    box.append(m.call_during_poll(reenter))
    assert await box[0] == ("coroutine already executing", "coroutine already executing")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.anyio
async def test_yield_from_a_rust_coroutine_await_iterator(loop_name):
    @types.coroutine
    def wrapper():
        return (yield from m.sleep(0.001, 5).__await__())

    assert await wrapper() == 5


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.anyio
async def test_yield_from_a_rust_coroutine_in_a_generator_coroutine(loop_name):
    @types.coroutine
    def wrapper():
        return (yield from m.sleep(0.001, 5))

    assert await wrapper() == 5


@pytest.mark.anyio
async def test_await_inside_except_keeps_the_handled_exception(loop_name):
    try:
        raise KeyError("outer")
    except KeyError as outer:
        for value in RESULTS:
            assert await m.echo(value) is value
            assert sys.exc_info()[1] is outer
            assert await m.sleep(0.001, value) is value
            assert sys.exc_info()[1] is outer
        with pytest.raises(ValueError):
            await m.fail(ValueError("inner"), False)
        assert sys.exc_info()[1] is outer


@pytest.mark.anyio
@pytest.mark.parametrize("suspend", [False, True], ids=["ready", "suspended"])
async def test_exception_context_in_an_except_block_as_native(loop_name, suspend):
    async def native(error):
        if suspend:
            await anyio.lowlevel.checkpoint()
        raise error

    contexts = []
    for make in (native, lambda e: m.fail(e, suspend)):
        try:
            try:
                raise KeyError("handled")
            except KeyError:
                await make(ValueError("raised"))
        except ValueError as error:
            contexts.append(repr(error.__context__))
    assert contexts[1] == contexts[0] == "KeyError('handled')"


@pytest.mark.anyio
async def test_lazy_errors_chain_the_handled_exception(loop_name):
    try:
        try:
            raise KeyError("handled")
        except KeyError:
            await m.lookup("missing")
    except LookupError as error:
        assert repr(error.__context__) == "KeyError('handled')"


def trace_events(body):
    """`body()` under `sys.settrace`: (event, exception type) of the frames of this module."""
    events = []

    def tracer(frame, event, arg):
        if frame.f_code.co_filename == __file__ and event == "exception":
            events.append((frame.f_code.co_name, arg[0].__name__))
        return tracer

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        result = body()
    finally:
        sys.settrace(old)
    return result, events


@pytest.mark.parametrize("value", RESULTS, ids=RESULT_IDS)
def test_results_under_settrace(value):
    async def awaiting_none():
        a = await m.echo(None)
        b = await m.sleep(0.001, None)
        return a, b

    async def awaiting(v):
        return await m.echo(v), await m.sleep(0.001, v)

    result, events = trace_events(lambda: asyncio.run(awaiting(value)))
    assert result[0] is value and result[1] is value
    assert not [e for e in events if e[1] != "StopIteration"], events
    # A None result ends the iteration without an exception: no event at all.
    result, events = trace_events(lambda: asyncio.run(awaiting_none()))
    assert result == (None, None)
    assert [e for e in events if e[0] == "awaiting_none"] == []


MONITORED = ("RAISE", "STOP_ITERATION", "RERAISE", "EXCEPTION_HANDLED", "PY_UNWIND", "PY_THROW")


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is 3.12+")
@pytest.mark.parametrize("value", RESULTS, ids=RESULT_IDS)
def test_results_under_sys_monitoring(value):
    monitoring = sys.monitoring
    tool = monitoring.DEBUGGER_ID
    monitoring.use_tool_id(tool, "attack")
    seen = []
    events = sum(getattr(monitoring.events, name) for name in MONITORED)
    try:
        for event_name in MONITORED:
            event = getattr(monitoring.events, event_name)

            def callback(code, offset, arg, event_name=event_name):
                seen.append((code.co_name, event_name, type(arg).__name__))

            monitoring.register_callback(tool, event, callback)
        monitoring.set_events(tool, events)

        async def awaiting(v):
            results = []
            for _ in range(3):
                results.append(await m.echo(v))
                results.append(await m.sleep(0.001, v))
            try:
                await m.fail(ValueError("x"), True)
            except ValueError:
                results.append("caught")
            return results

        result = asyncio.run(awaiting(value))
        assert result[:6] == [value] * 6 and result[6] == "caught"
        assert all(r is value for r in result[:6])
        assert trio.run(m.echo, value) is value
    finally:
        monitoring.set_events(tool, 0)
        for event_name in MONITORED:
            monitoring.register_callback(tool, getattr(monitoring.events, event_name), None)
        monitoring.free_tool_id(tool)
    assert ("awaiting", "RAISE", "ValueError") in seen
    if value is None:
        # A None result ends the `await` with no exception at all, as a native one does.
        assert [e for e in seen if e[0] == "awaiting" and e[2] == "StopIteration"] == []


# ---- exit ----


@pytest.mark.parametrize("loop_module", ["asyncio", "uvloop"])
def test_exit_with_parked_coroutines_forgotten_cycles_and_collections(loop_module):
    out = run_script(
        f"""
        import asyncio, gc, threading
        import {loop_module} as chosen
        import pyo3_async_pytests as m

        gc.set_threshold(1)
        kept = []

        class Resurrector:
            def __del__(self):
                kept.append(self)

        async def holds(trigger):
            r = Resurrector()
            r.task = asyncio.current_task()
            await trigger.wait("never")

        async def main():
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda loop, context: None)
            for _ in range(50):
                asyncio.ensure_future(m.parks_forever())         # forgotten
                kept.append(asyncio.ensure_future(holds(m.Trigger())))
                kept.append(asyncio.ensure_future(m.delegate_to(loop.create_future())))
            await asyncio.sleep(0.01)
            gc.collect()
            print("parked", flush=True)

        loop = chosen.new_event_loop()
        loop.run_until_complete(main())
        kept.append(loop)  # never closed

        stop = threading.Event()
        def collect():
            while not stop.is_set():
                gc.collect()
        threading.Thread(target=collect, daemon=True).start()
        """
    )
    assert "parked" in out


def test_exit_with_tasks_parked_before_any_await():
    # No `await` of a Rust coroutine ever ran: asyncio's task drives them alone (PyO3's
    # `__next__`, PyO3's traversal); exit collects and closes them.
    out = run_script(
        """
        import asyncio, gc
        import pyo3_async_pytests as m

        kept = []

        async def main():
            asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
            for _ in range(50):
                kept.append(asyncio.ensure_future(m.pending_forever(m.Probe())))
                asyncio.ensure_future(m.parks_forever())
            await asyncio.sleep(0)
            gc.collect()
            print("parked", all(t._fut_waiter is not None for t in kept), flush=True)

        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        kept.append(loop)
        gc.set_threshold(1)
        """
    )
    assert out.split() == ["parked", "True"]


def test_exit_inside_a_delegated_coroutine_collecting():
    out = run_script(
        """
        import asyncio, gc, sys
        import pyo3_async_pytests as m

        async def inner():
            gc.collect()
            print("exiting", flush=True)
            sys.exit(0)

        async def main():
            await m.delegate_to(inner())

        asyncio.run(main())
        """
    )
    assert "exiting" in out

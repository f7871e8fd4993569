"""Attack round 12 (helper) on the finished stand-ins: a C asyncio task's wake-up
(`task_wakeup`) is handed a resolved or cancelled `_asyncio.Future` of the task's loop
(src/backend/finished_future.rs, src/glue/helpers.py `finished_futures`/`is_task_wakeup`)
instead of the WakeupFuture it waited on (src/backend/wakeup_future.rs). Since commit 90c481a
they were one pair per process, of no loop; now each loop (its home, src/home/mod.rs) makes its
own pair with that loop at its first wake-up, and each stand-in is checked before it is handed
out (a changed one never is again).

What is attacked: whether a stand-in reaching user code (a loop's own `call_soon`) is a future
of that loop, and whether user code changing it changes any later wake-up; whether a stand-in
reaches user code in any other way (`task._fut_waiter`, callbacks, bound built-in methods of
tasks, the task's own wake-up added twice, profilers, the collector's referrers); whether
anything behaves unlike a native coroutine awaiting a loop future (cancellations with and
without messages, repeated cancels, cancels during the step and after the wake-up, Task
subclasses, the pure-Python task, eager tasks, wait_for, timeout, TaskGroup, shield, gather,
anyio's scopes, the CancelledError's context and traceback), the first wake-up's Python helpers
interrupted, 10,000 wake-ups and cancels interleaved (the stand-ins' reference counts), wake-ups
from threads, loops of their own in threads (one pair each), runners that finish with parked
tasks, twice in one process, and a closed loop's stand-ins collected with it.

A loop's stand-ins are what a spying loop's `call_soon` is handed for its Rust coroutines'
wake-ups (`stand_ins`): scenarios that need them run on a spying loop in a thread of their own
(`run_spied`). Scenarios that need a process where no stand-in was made yet (or whose first
wake-up must be interrupted) run in a fresh interpreter (`run_script`)."""

import asyncio
import gc
import json
import sys
import threading
import traceback
import weakref

import _asyncio
import anyio
import pytest
import uvloop

import pyo3_async_pytests as m

from helpers import run_script, until, until_threads
from test_attack_wakeup_future import (
    FutureBetween,
    asyncio_only,
    cancelled_with,
    fire_and_resolve,
    make,
    outcome,
    parked,
    run_on_private_loop,
)

pytestmark = pytest.mark.anyio

py311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="3.11's cancellation counts")


class Spied(tuple):
    """(task, argument) of a wake-up a spying loop saw: this file's own record, which the
    collector's referrers may show and which counts for nothing."""


def spying(base):
    """A loop class whose `call_soon` records what every C task's wake-up is handed: the
    public way for a loop (a subclass, an instrumented loop) to see the wake-up's argument.
    Once `count_only` was called on it, it keeps no reference: it counts the arguments (by
    `id()` for `_asyncio.Future`s, by type name for the rest)."""

    class SpyingLoop(base):
        def call_soon(self, callback, *args, context=None):
            if getattr(callback, "__name__", None) == "task_wakeup" and args:
                tally = self.__dict__.get("tally")
                if tally is None:
                    spied = Spied((callback.__self__, args[0]))
                    self.__dict__.setdefault("wakeups", []).append(spied)
                else:
                    argument = args[0]
                    key = (
                        id(argument)
                        if type(argument) is _asyncio.Future
                        else type(argument).__name__
                    )
                    tally[key] = tally.get(key, 0) + 1
            return super().call_soon(callback, *args, context=context)

    return SpyingLoop


SPYING_LOOPS = {"asyncio": spying(asyncio.SelectorEventLoop), "uvloop": spying(uvloop.Loop)}
SPY_CODE = SPYING_LOOPS["asyncio"].call_soon.__code__
assert SPYING_LOOPS["uvloop"].call_soon.__code__ is SPY_CODE


def count_only(loop):
    """From now on the spying `loop` forgets what it recorded and only counts (see `spying`):
    its records would hold the stand-ins, the tasks and the WakeupFutures. The counts."""
    loop.__dict__.pop("wakeups", None)
    loop.tally = {}
    return loop.tally


def run_spied(loop_name, main):
    """Runs `main()` on a new spying loop, in a thread of its own (a test's own loop may be
    running in this one); what it returned, and the (task, argument) of every wake-up
    scheduled (while it recorded them)."""
    answer = []

    def run():
        loop = SPYING_LOOPS[loop_name]()
        errors = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        try:
            result = loop.run_until_complete(main())
            answer.append((result, errors, loop.__dict__.get("wakeups", [])))
        finally:
            loop.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert answer, "the spied loop's run failed or hung"
    result, errors, wakeups = answer[0]
    assert errors == []
    return result, wakeups


def _rust_coroutine_type():
    coroutine = m.Trigger().wait()
    coroutine.close()
    return type(coroutine)


RUST_COROUTINE = _rust_coroutine_type()


def stand_ins_of(loop):
    """The stand-ins (resolved, cancelled) of `loop`, a spying loop: the `_asyncio.Future`s
    its `call_soon` was handed (so far) for the wake-ups of tasks driving Rust coroutines.
    Every one is a future of that loop, and there is one of each, the same at every
    wake-up."""
    found = [
        argument
        for task, argument in loop.__dict__.get("wakeups", [])
        if type(task.get_coro()) is RUST_COROUTINE and type(argument) is _asyncio.Future
    ]
    assert all(future.get_loop() is loop for future in found), "a stand-in of another loop"
    resolved = [future for future in found if not future.cancelled()]
    cancelled = [future for future in found if future.cancelled()]
    assert resolved and cancelled, "the stand-ins are in use (a C task's wake-up takes them)"
    assert all(future is resolved[0] for future in resolved), "one resolved stand-in a loop"
    assert all(future is cancelled[0] for future in cancelled), "one cancelled stand-in a loop"
    return resolved[0], cancelled[0]


async def stand_ins():
    """The running loop's two stand-ins (resolved, cancelled), as its `call_soon` (a spying
    loop's) is handed them when a C task's Rust coroutine is woken and cancelled."""
    for how in ("fire", "cancel"):
        task, trigger, _ = await parked("rust")
        trigger.fire() if how == "fire" else task.cancel()
        await outcome(task)
    return stand_ins_of(asyncio.get_running_loop())


# ---- 1. The stand-ins reach a loop's `call_soon`, and through it any user code ----


def wake_up_arguments(loop_name, kind):
    """The loop, the waiters of a woken and of a cancelled task of `kind`, and the futures
    (not tasks) that the loop's `call_soon` was handed for C tasks' wake-ups meanwhile; what
    a done-callback added to each of those (while the loop ran) was handed."""

    async def main():
        loop = asyncio.get_running_loop()
        waiters = []
        for how in ("fire", "cancel"):
            task, trigger, waiter = await parked(kind)
            waiters.append(waiter)
            trigger.fire() if how == "fire" else task.cancel()
            await outcome(task)
        called = []
        for _task, argument in loop.wakeups:
            if asyncio.isfuture(argument) and not isinstance(argument, asyncio.Task):
                argument.add_done_callback(called.append)
        await until(lambda: len(called) == 2)
        return loop, waiters, called

    (loop, waiters, called), wakeups = run_spied(loop_name, main)
    handed = [
        argument
        for _task, argument in wakeups
        if asyncio.isfuture(argument) and not isinstance(argument, asyncio.Task)
    ]
    assert called == handed
    return loop, waiters, handed


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_loops_call_soon_is_handed_the_native_future_the_task_waited_on(loop_name):
    """The reference for the next test: `loop.call_soon(task_wakeup, future)` is public, and
    a loop subclass (an instrumented loop, a debugger) sees its argument: for a native
    coroutine, the future the task waited on, a future of that loop."""
    loop, waiters, handed = wake_up_arguments(loop_name, "native")
    assert handed == waiters and all(future.get_loop() is loop for future in handed)


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_loops_call_soon_is_handed_a_future_of_that_loop(loop_name):
    """For a Rust coroutine the loop's `call_soon` is handed the loop's stand-ins (once fixed,
    a future of no loop: `get_loop()` was a `_NoLoop`, `add_done_callback` raised
    AttributeError): finished C futures of that very loop, resolved then cancelled as the
    task's waiter, whose done-callbacks the loop runs, handed the stand-in, as a native
    future's."""
    loop, waiters, handed = wake_up_arguments(loop_name, "rust")
    if len(handed) != 2:
        pytest.fail(f"one future per wake-up expected: {handed}")
    assert [future.get_loop() is loop for future in handed] == [True, True], handed
    assert [type(future) for future in handed] == [_asyncio.Future] * 2
    resolved, cancelled = handed
    assert resolved.result() is None and cancelled.cancelled()
    assert [waiter.cancelled() for waiter in waiters] == [False, True]
    assert not any(future is waiter for future in handed for waiter in waiters)


POISON = r"""
import asyncio, json, sys, traceback
import pyo3_async_pytests as m

class SpyingLoop(asyncio.SelectorEventLoop):
    handed = None
    def call_soon(self, callback, *args, context=None):
        if getattr(callback, "__name__", None) == "task_wakeup":
            if self.handed is None:
                self.handed = args[0]
            self.__dict__.setdefault("all_handed", []).append(args[0])
        return super().call_soon(callback, *args, context=context)

def first_wake_up(how):
    # The loop, and what its call_soon is handed for one wake-up ("fire") or cancel
    # ("cancel") of a C task; then that object is changed as any asyncio future may be.
    loop = SpyingLoop()
    async def main():
        trigger = m.Trigger() if KIND == "rust" else None
        if KIND == "rust":
            task = loop.create_task(trigger.wait())
        else:
            future = loop.create_future()
            async def native():
                await future
            task = loop.create_task(native())
        while task._fut_waiter is None:
            await asyncio.sleep(0)
        if how == "cancel":
            task.cancel()
        elif KIND == "rust":
            trigger.fire()
        else:
            future.set_result(None)
        try:
            await task
        except asyncio.CancelledError:
            pass
    loop.run_until_complete(main())
    return loop, loop.handed

def later_tasks(loop):
    # Tasks of `loop`, each with its own Rust coroutine: woken, cancelled, cancelled with a
    # message. What each gets, and the frames of the errors they get; what the loop's
    # call_soon was handed for their wake-ups: its type's name, whether it is `handed`.
    async def main():
        results = []
        for how in ["fire", "cancel", "message"] * 3:
            trigger = m.Trigger()
            task = asyncio.get_running_loop().create_task(trigger.wait("woken"))
            while task._fut_waiter is None:
                await asyncio.sleep(0)
            loop.all_handed = []
            if how == "fire":
                trigger.fire()
            elif how == "cancel":
                task.cancel()
            else:
                task.cancel("mine")
            try:
                results.append(["value", await task])
            except BaseException as error:
                frames = len(traceback.extract_tb(error.__traceback__))
                results.append([type(error).__name__, list(map(str, error.args)), frames])
            # The first is the Rust coroutine's wake-up (then main's, handed the task).
            first = loop.all_handed[0]
            results[-1].append([type(first).__name__, first is handed])
        return results
    results = loop.run_until_complete(main())
    loop.close()
    return results
"""


def poisoned(kind, how, change):
    """In a fresh interpreter: the object a loop's call_soon is handed for a C task's first
    wake-up (`how`) of a `kind` coroutine is changed by `change` (Python source, `handed`
    names it); what later Rust coroutines' tasks then get, on that loop, and on a new one.
    Each result ends with what the wake-up was handed: its type's name, whether it is the
    changed object."""
    out = run_script(
        POISON
        + f"""
KIND = {kind!r}
loop, handed = first_wake_up({how!r})
{change}
print(json.dumps([later_tasks(loop), later_tasks(SpyingLoop())]))
""",
        forbidden=("panic", "fatal python error"),
    )
    return json.loads(out.splitlines()[-1])


# Any asyncio future can be re-initialised (pending again) and given an outcome.
REINITIALISED = (
    "handed.__init__(loop=asyncio.new_event_loop()); handed.set_exception(ValueError('poison'))"
)
CHANGES = {
    "fire": {
        "exception": REINITIALISED,
        "value": "handed.__init__(loop=handed.get_loop()); handed.set_result('poison')",
        "pending": "handed.__init__(loop=handed.get_loop())",
        "cancelled": "handed.__init__(loop=handed.get_loop()); handed.cancel()",
    },
    "cancel": {
        "message": "handed._cancel_message = 'not mine'",
        "pending": "handed.__init__(loop=handed.get_loop())",
        "resolved": "handed.__init__(loop=handed.get_loop()); handed.set_result(None)",
        "message_again": "handed.__init__(loop=handed.get_loop()); handed.cancel('not mine')",
    },
}


# 3.15 refuses to re-initialise a future ("already initialized"): there, only the cancelled
# stand-in's `_cancel_message` can be changed.
REINITIALISES = pytest.mark.skipif(
    sys.version_info >= (3, 15), reason="3.15 refuses to re-initialise a future"
)


def changes(how):
    return [
        pytest.param(name, marks=REINITIALISES) if "__init__" in change else name
        for name, change in CHANGES[how].items()
    ]


def unpoisoned():
    message = ["mine"] if sys.version_info >= (3, 11) else []  # 3.10's tasks drop it
    return [["value", "woken"], ["CancelledError", [], 1], ["CancelledError", message, 1]] * 3


def test_a_native_wake_up_argument_changed_by_user_code_changes_nothing_else():
    """The reference for the next tests: a native task's future, changed after it served,
    changes nothing for other tasks, of its loop or of another, and is never handed again."""
    for how, change in [("fire", REINITIALISED), ("cancel", "handed._cancel_message = 'not mine'")]:
        if "__init__" in change and sys.version_info >= (3, 15):
            continue  # refused there (see REINITIALISES)
        for results in poisoned("native", how, change):
            assert [result[:-1] for result in results] == unpoisoned(), results
            assert not any(result[-1][1] for result in results)


def handed_after_change(how):
    """What the loop's later wake-ups are handed once its `how` stand-in was changed: that
    outcome's wake-ups the WakeupFuture itself, the other's the (intact) other stand-in; a
    cancellation with a message, always the WakeupFuture."""
    changed = "WakeupFuture"
    fire, cancel = (changed, "Future") if how == "fire" else ("Future", changed)
    return [[fire, False], [cancel, False], ["WakeupFuture", False]] * 3


UNCHANGED = [["Future", False], ["Future", False], ["WakeupFuture", False]] * 3


@pytest.mark.parametrize("change", changes("fire"))
def test_a_resolved_stand_in_changed_by_user_code_poisons_no_later_wake_up(change):
    """Once a loop's call_soon was handed its resolved stand-in and changed it (before the fix,
    re-initialised with an exception, it made every later wake-up of every Rust coroutine in
    the process raise that one exception object, its traceback growing at each): every later
    wake-up gets its own outcome, the loop's later wake-ups are handed the WakeupFuture, never
    the changed stand-in, and another loop's are handed its own stand-ins."""
    same_loop, other_loop = poisoned("rust", "fire", CHANGES["fire"][change])
    for results in (same_loop, other_loop):
        assert [result[:-1] for result in results] == unpoisoned(), results
    assert [result[-1] for result in same_loop] == handed_after_change("fire"), same_loop
    assert [result[-1] for result in other_loop] == UNCHANGED, other_loop


@pytest.mark.parametrize("change", changes("cancel"))
def test_a_cancelled_stand_in_changed_by_user_code_changes_no_later_cancellation(change):
    """Once a loop's call_soon was handed its cancelled stand-in and changed it (before the
    fix, a `_cancel_message` set on it was carried by every later message-less cancellation
    of every Rust coroutine in the process): every later cancellation gets its own error, the
    loop's later cancellations are handed the WakeupFuture, never the changed stand-in, and
    another loop's are handed its own stand-ins."""
    same_loop, other_loop = poisoned("rust", "cancel", CHANGES["cancel"][change])
    for results in (same_loop, other_loop):
        assert [result[:-1] for result in results] == unpoisoned(), results
    assert [result[-1] for result in same_loop] == handed_after_change("cancel"), same_loop
    assert [result[-1] for result in other_loop] == UNCHANGED, other_loop


# ---- 2. The first wake-up's Python helpers, interrupted ----

INTERRUPTED = r"""
import asyncio, sys
import pyo3_async_pytests as m

HELPER = {helper!r}
PRIMED = {primed!r}

class SpyingLoop(asyncio.SelectorEventLoop):
    def call_soon(self, callback, *args, context=None):
        if getattr(callback, "__name__", None) == "task_wakeup":
            argument = args[0]
            self.__dict__.setdefault("handed", []).append(
                (type(argument).__name__, argument.get_loop() is self)
            )
        return super().call_soon(callback, *args, context=context)

called = []

def profile(frame, event, arg):
    # Where a Ctrl-C's handler runs when SIGINT arrives as the helper starts.
    if event == "call" and frame.f_code.co_name == HELPER:
        called.append(HELPER)
        sys.setprofile(None)
        raise KeyboardInterrupt

interrupts = []

async def wake(interrupted):
    trigger = m.Trigger()
    task = asyncio.get_running_loop().create_task(trigger.wait("woken"))
    while task._fut_waiter is None:
        await asyncio.sleep(0)
    if interrupted:
        # Until the task is done: under the limited API the wake-up is delivered later, by
        # the loop's home.
        sys.setprofile(profile)
    try:
        trigger.fire()
    except KeyboardInterrupt:
        interrupts.append("fire")
    return await task

if PRIMED:
    # Another loop's wake-ups first: the process's helpers ran once already, the loop under
    # test still makes its own stand-ins.
    assert asyncio.run(wake(False)) == "woken"

loop = SpyingLoop()
results = []
for interrupted in (True, False, False):
    outer = loop.create_task(wake(interrupted))
    while not outer.done():
        try:
            loop.run_until_complete(outer)
        except KeyboardInterrupt:
            interrupts.append("run")
    sys.setprofile(None)
    results.append(outer.result())
print(repr((results, interrupts, loop.handed, called)))
"""


def interrupted_first_wake_up(helper, primed=False):
    """In a fresh interpreter, the first wake-up's `helper` is interrupted as it starts (when
    `primed`, the first of the loop, after another loop's): what the three tasks got, where
    interrupts came out, what each wake-up was handed (its type's name, whether its loop is
    the loop)."""
    script = INTERRUPTED.replace("{helper!r}", repr(helper)).replace("{primed!r}", repr(primed))
    out = run_script(script, forbidden=("panic", "fatal"))
    results, interrupts, handed, called = eval(out.splitlines()[-1])  # noqa: S307 (our print)
    if called != [helper] or results != ["woken"] * 3:
        pytest.fail(f"the scenario did not run as meant: {results, called}")
    return interrupts, handed


INTERRUPTIBLE = [
    pytest.param("is_task_wakeup", False, id="is_task_wakeup"),
    pytest.param("finished_futures", False, id="finished_futures"),
    pytest.param("finished_futures", True, id="finished_futures-second_loop"),
]


@pytest.mark.parametrize(("helper", "primed"), INTERRUPTIBLE)
def test_an_interrupt_during_the_first_wake_ups_helpers_propagates(helper, primed):
    """The wake-up is still delivered (the task gets its value), and the interrupt comes out
    once (before the fix it was swallowed: unwrap_or(false) / .ok()), as the backend promises
    for an interrupt during a delivery (backend/mod.rs: "an interrupt still delivers the
    wake-up, then propagates")."""
    interrupts, _handed = interrupted_first_wake_up(helper, primed)
    assert len(interrupts) == 1, (helper, interrupts)


@pytest.mark.parametrize(("helper", "primed"), INTERRUPTIBLE)
def test_an_interrupted_first_making_of_the_stand_ins_is_tried_again(helper, primed):
    """The interrupted wake-up is handed the WakeupFuture itself; nothing is remembered of the
    failure (before the fix, one failed finished_futures was kept as 'no stand-ins' for the
    life of the process): the loop's later wake-ups are handed its stand-ins, futures of that
    loop."""
    _interrupts, handed = interrupted_first_wake_up(helper, primed)
    # Each wake-up of a Rust coroutine, then of the outer task awaiting it (handed the task).
    wakeups, outer = handed[::2], handed[1::2]
    if len(handed) != 6 or wakeups[0] != ("WakeupFuture", True):
        pytest.fail(f"the scenario did not run as meant: {handed}")
    assert outer == [("Task", True)] * 3, handed
    assert wakeups[1:] == [("Future", True), ("Future", True)], handed


# ---- 3. Nothing of the task's or the future's public surface is a stand-in ----


def test_no_waiter_or_callback_argument_is_ever_a_stand_in(loop_name):
    """`task._fut_waiter` while parked, after the wake-up or cancel (before the step) and after
    the step; what user callbacks on the waiter are handed, added before and after it
    finished; `all_tasks()`; the task's stack: never one of the loop's stand-ins, never an
    `_asyncio.Future`."""
    asyncio_only(loop_name)
    run_spied(loop_name, no_waiter_or_callback_argument_is_a_stand_in)


async def no_waiter_or_callback_argument_is_a_stand_in():
    resolved, cancelled = await stand_ins()
    seen = []
    for how in ("fire", "cancel", "message", "late"):
        handed = []
        task, trigger, waiter = await parked("rust")
        waiter.add_done_callback(handed.append)
        seen.append(task._fut_waiter)
        if how == "fire":
            trigger.fire()
        elif how == "cancel":
            task.cancel()
        elif how == "message":
            task.cancel("m")
        else:
            await fire_and_resolve(trigger, task, waiter)
            task.cancel()
        seen.append(task._fut_waiter)
        seen.extend(asyncio.all_tasks())
        seen.extend(task.get_stack())
        await outcome(task)
        assert task._fut_waiter is None
        waiter.add_done_callback(handed.append)
        await until(lambda: len(handed) == 2)
        assert handed[0] is waiter and handed[1] is waiter, (how, handed)
        seen.extend(handed)
    assert not any(item is resolved or item is cancelled for item in seen)
    assert all(type(item) is not _asyncio.Future for item in seen)
    assert stand_ins_of(asyncio.get_running_loop()) == (resolved, cancelled), "still in use"


@pytest.mark.parametrize("method", ["cancel", "set_name"])
async def test_bound_builtin_methods_of_a_task_as_callbacks_are_handed_the_waiter(
    loop_name, method
):
    """`other.cancel` and `other.set_name` (C methods of a C task, as its wake-up is) added
    as done-callbacks of a task's waiter: handed the waiter itself, as a native future hands
    itself, whether it was woken or cancelled."""
    asyncio_only(loop_name)

    async def scenario(kind, how):
        task, trigger, waiter = await parked(kind)
        other, _other_trigger, _ = await parked(kind)
        name = other.get_name()
        waiter.add_done_callback(getattr(other, method))
        if how == "fire":
            trigger.fire()
        else:
            task.cancel()
        first = await outcome(task)
        if method == "cancel":
            with pytest.raises(asyncio.CancelledError) as raised:
                await other
            # 3.10's tasks drop the message.
            handed = raised.value.args[0] if raised.value.args else waiter
            return first, handed is waiter
        await until(lambda: other.get_name() != name)
        handed = other.get_name()
        other.cancel()
        await outcome(other)
        return first, handed == str(waiter)

    for how in ("fire", "cancel"):
        native = await scenario("native", how)
        assert await scenario("rust", how) == native
        assert native[1] is True


async def test_another_tasks_wake_up_added_to_the_waiter_matches_a_native_future(loop_name):
    """The wake-up of task B (a C task parked on a loop future), taken from that future's
    callbacks and added to task A's waiter: when A's waiter finishes (woken, or cancelled with
    or without a message), B is stepped before its own future is done, as with a native A:
    woken, B's future is yielded again; cancelled, B is cancelled."""
    asyncio_only(loop_name)
    loop = asyncio.get_running_loop()

    async def scenario(kind, how):
        errors = []
        previous = loop.get_exception_handler()
        loop.set_exception_handler(
            lambda _loop, context: errors.append(type(context.get("exception")))
        )
        try:
            own = loop.create_future()

            async def b_body():
                return await own

            b = loop.create_task(b_body())
            await until(lambda: b._fut_waiter is own)
            b_wakeup = own._callbacks[0][0]
            a, trigger, waiter = await parked(kind)
            waiter.add_done_callback(b_wakeup)
            if how == "fire":
                trigger.fire()
            else:
                a.cancel(None if how == "cancel" else "m")
            results = [await outcome(a)]
            for _ in range(3):
                await asyncio.sleep(0)
            # Woken: B re-yields its pending future (a second wake-up on it). Cancelled: B
            # is thrown the CancelledError.
            results.append(b.done())
            own.cancel()
            results.append(await outcome(b))
            for _ in range(3):
                await asyncio.sleep(0)
            return results, errors
        finally:
            loop.set_exception_handler(previous)

    for how in ("fire", "cancel", "message"):
        assert await scenario("rust", how) == await scenario("native", how), how


async def test_the_tasks_own_wake_up_added_again_steps_it_once_more_as_natively(loop_name):
    """A task's own wake-up (taken from a loop future it awaited before) added once more to
    the waiter of the coroutine it now awaits: it is stepped twice; the coroutine ends at the
    first step, the second finds the task done and the loop reports it, as natively."""
    asyncio_only(loop_name)
    loop = asyncio.get_running_loop()

    async def scenario(kind, how):
        errors = []
        previous = loop.get_exception_handler()
        loop.set_exception_handler(
            lambda _loop, context: errors.append(type(context.get("exception")))
        )
        try:
            before = loop.create_future()
            trigger = make(kind)

            async def body():
                await before
                return await trigger.wait("woken")

            task = loop.create_task(body())
            await until(lambda: task._fut_waiter is before)
            wakeup = before._callbacks[0][0]
            before.set_result(None)
            await until(lambda: task._fut_waiter not in (None, before))
            task._fut_waiter.add_done_callback(wakeup)
            if how == "fire":
                trigger.fire()
            else:
                task.cancel(None if how == "cancel" else "m")
            result = await outcome(task)
            await until(lambda: errors)
            return result, errors
        finally:
            loop.set_exception_handler(previous)

    for how in ("fire", "cancel", "message"):
        native = await scenario("native", how)
        assert await scenario("rust", how) == native, how
        assert native[1] == [asyncio.InvalidStateError]


async def test_the_tasks_own_wake_up_added_again_then_parked_again_ends_the_task(loop_name):
    """As above, but the coroutine parks again after the first step. A native future is
    yielded again by the spurious second step and the task goes on (its second future's two
    wake-ups then find it done once); a Rust coroutine refuses a resumption while it waits
    ("driven by two tasks?", src/backend/asyncio.rs): the task fails. Either way the task
    ends, and nothing hangs. (A difference from native coroutines that predates the
    stand-ins: the WakeupFuture handed instead would do the same.)"""
    asyncio_only(loop_name)
    loop = asyncio.get_running_loop()

    async def scenario(kind):
        errors = []
        previous = loop.get_exception_handler()
        loop.set_exception_handler(
            lambda _loop, context: errors.append(type(context.get("exception")))
        )
        try:
            before = loop.create_future()
            first, second = make(kind), make(kind)

            async def body():
                await before
                return await first.wait("a"), await second.wait("b")

            task = loop.create_task(body())
            await until(lambda: task._fut_waiter is before)
            wakeup = before._callbacks[0][0]
            before.set_result(None)
            await until(lambda: task._fut_waiter not in (None, before))
            task._fut_waiter.add_done_callback(wakeup)
            first.fire()
            if kind == "native":
                await until(lambda: second.future is not None)
                for _ in range(3):
                    await asyncio.sleep(0)
                assert not task.done()
            else:
                await until(task.done)
            second.fire()
            result = await outcome(task)
            for _ in range(5):
                await asyncio.sleep(0)
            return result, errors
        finally:
            loop.set_exception_handler(previous)

    assert await scenario("native") == (("value", ("a", "b")), [asyncio.InvalidStateError])
    assert await scenario("rust") == (
        (
            "error",
            "RuntimeError",
            "coroutine resumed while it waits for its wake-up: is it driven by two tasks?",
        ),
        [],
    )


# ---- 4. Side by side with a native coroutine, for every kind of task ----


class SubTask(asyncio.Task):
    """A Python subclass of the C task: its wake-up is still the C `task_wakeup`."""


def task_makers():
    makers = {
        "C": lambda loop, coroutine: loop.create_task(coroutine),
        "subclass": lambda loop, coroutine: SubTask(coroutine, loop=loop),
        "Python": lambda loop, coroutine: asyncio.tasks._PyTask(coroutine, loop=loop),
    }
    if sys.version_info >= (3, 12):
        makers["eager"] = lambda loop, coroutine: asyncio.Task(
            coroutine, loop=loop, eager_start=True
        )
    return makers


ACTIONS = [
    "fire",
    "cancel",
    "cancel_message",
    "cancel_twice",
    "cancel_then_message",
    "fire_then_cancel",
    "cancel_then_fire",
    "waiter_cancel",
    "waiter_cancel_message",
    "cancel_in_step",
    "cancel_in_step_message",
    "cancel_uncancel",
    "fire_before_seen",
    "cancel_before_seen",
    "fire_then_cancel_uncancel",
]


async def one_action(kind, make_task, action):
    """What a task gets for `action` on a `kind` coroutine: comparable across kinds."""
    loop = asyncio.get_running_loop()
    trigger = make(kind)
    # The backend is named: 3.14's pure-Python Task is invisible to `current_task()` (C), so
    # sniffio cannot tell asyncio under it (test_attack_wakeup_future.py).
    coroutine = trigger.wait("woken", "asyncio")
    if action.startswith("cancel_in_step"):
        message = "m" if action.endswith("message") else None
        # The task itself once made; `current_task()` during an eager task's first step.
        made = []
        between = FutureBetween(
            coroutine, lambda _: (made[0] if made else asyncio.current_task()).cancel(message)
        )
        task = make_task(loop, between.drive())
        made.append(task)
    elif action.endswith("before_seen"):
        # The waiter finishes between the coroutine's yield and the task's look at it: the
        # task's wake-up is added to a finished future, and scheduled at once.
        def finish(future):
            if action == "cancel_before_seen":
                future.cancel()
            elif not future.done():
                trigger.fire()

        task = make_task(loop, FutureBetween(coroutine, finish).drive())
    else:
        task = make_task(loop, coroutine)
    await until(lambda: task._fut_waiter is not None or task.done())
    waiter = task._fut_waiter
    answers = []
    if action == "fire":
        trigger.fire()
    elif action == "cancel":
        answers.append(task.cancel())
    elif action == "cancel_message":
        answers.append(task.cancel("m"))
    elif action == "cancel_twice":
        answers += [task.cancel(), task.cancel()]
    elif action == "cancel_then_message":
        answers += [task.cancel(), task.cancel("second")]
    elif action == "fire_then_cancel":
        await fire_and_resolve(trigger, task, waiter)
        answers.append(task.cancel())
    elif action == "cancel_then_fire":
        answers.append(task.cancel())
        trigger.fire()
    elif action == "waiter_cancel":
        answers.append(waiter.cancel())
    elif action == "waiter_cancel_message":
        answers.append(waiter.cancel("w"))
    elif action == "fire_then_cancel_uncancel":
        await fire_and_resolve(trigger, task, waiter)
        answers.append(task.cancel())
        if sys.version_info >= (3, 11):
            answers.append(task.uncancel())
    elif action == "cancel_uncancel":
        answers.append(task.cancel())
        if sys.version_info >= (3, 11):
            answers.append(task.uncancel())
    result = await outcome(task)
    counts = (task.cancelling(),) if sys.version_info >= (3, 11) else ()
    return answers, result, task.cancelled(), counts


@pytest.mark.parametrize("task_class", list(task_makers()))
async def test_every_action_on_every_kind_of_task_matches_a_native_coroutine(loop_name, task_class):
    asyncio_only(loop_name)
    if task_class == "eager" and loop_name == "uvloop" and sys.version_info < (3, 14):
        pytest.skip("uvloop takes no eager_start before 3.14")
    make_task = task_makers()[task_class]
    for action in ACTIONS:
        native = await one_action("native", make_task, action)
        rust = await one_action("rust", make_task, action)
        assert rust == native, action


@py311
async def test_asyncio_machinery_over_parked_rust_coroutines_matches_native(loop_name):
    """timeout (nested), wait_for, gather cancelled, shield with the outer cancelled, a
    TaskGroup whose child fails: outcomes and the host's `cancelling()` as natively."""
    asyncio_only(loop_name)

    async def scenario(kind):
        host = asyncio.current_task()
        seen = []

        async def failing():
            await asyncio.sleep(0)
            raise ValueError("child")

        # Nested timeouts: the inner one expires.
        try:
            async with asyncio.timeout(3600):
                async with asyncio.timeout(0):
                    await make(kind).wait()
        except TimeoutError:
            seen.append(("timeout", host.cancelling()))
        # wait_for with an immediate timeout.
        try:
            await asyncio.wait_for(make(kind).wait(), 0)
        except TimeoutError:
            seen.append(("wait_for", host.cancelling()))
        # gather cancelled.
        triggers = [make(kind) for _ in range(3)]
        children = [asyncio.ensure_future(trigger.wait(i)) for i, trigger in enumerate(triggers)]
        gathered = asyncio.gather(*children)
        await until(lambda: all(child._fut_waiter is not None for child in children))
        triggers[0].fire()
        await until(children[0].done)
        seen.append(("gather", gathered.cancel(), await outcome(gathered)))
        seen.append([await outcome(child) for child in children])
        # shield: the outer task cancelled, the inner one goes on.
        trigger = make(kind)
        inner = asyncio.ensure_future(trigger.wait("inner"))

        async def shielded():
            return await asyncio.shield(inner)

        outer = asyncio.ensure_future(shielded())
        await until(lambda: inner._fut_waiter is not None and outer._fut_waiter is not None)
        seen.append(("shield", outer.cancel(), await outcome(outer), inner.done()))
        trigger.fire()
        seen.append(await outcome(inner))
        # A TaskGroup whose child fails.
        try:
            async with asyncio.TaskGroup() as group:
                parked_children = [group.create_task(make(kind).wait()) for _ in range(3)]
                group.create_task(failing())
        except BaseExceptionGroup as raised:  # noqa: F821 (3.11+)
            seen.append(("group", [type(error).__name__ for error in raised.exceptions]))
        seen.append([child.cancelled() for child in parked_children])
        while host.uncancel():
            pass
        return seen

    native = await scenario("native")
    assert native[:2] == [("timeout", 0), ("wait_for", 0)] and len(native) == 8
    assert await scenario("rust") == native


def test_every_cancelled_error_is_new_with_no_context_and_no_frames_of_others(loop_name):
    """200 Rust coroutines cancelled without a message, each inside a native wrapper that
    catches what it is thrown: 200 different errors, none with a `__context__`, all with the
    same traceback length (a shared error would grow it at each), no frame of them holding a
    stand-in; each was handed the loop's cancelled stand-in."""
    asyncio_only(loop_name)
    run_spied(loop_name, every_cancelled_error_is_new)


async def every_cancelled_error_is_new():
    loop = asyncio.get_running_loop()
    resolved, cancelled = await stand_ins()
    tally = count_only(loop)
    caught = []

    async def wrapper(trigger):
        try:
            await trigger.wait()
        except asyncio.CancelledError as error:
            caught.append(error)
            raise

    tasks = []
    for _ in range(200):
        task = asyncio.ensure_future(wrapper(m.Trigger()))
        tasks.append(task)
    await until(lambda: all(task._fut_waiter is not None for task in tasks))
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)
    assert len(caught) == 200 and len({id(error) for error in caught}) == 200
    assert all(error.args == () and error.__context__ is None for error in caught)
    lengths = {len(traceback.extract_tb(error.__traceback__)) for error in caught}
    assert len(lengths) == 1, lengths
    for error in caught:
        tb = error.__traceback__
        while tb is not None:
            values = tb.tb_frame.f_locals.values()
            assert not any(value is resolved or value is cancelled for value in values)
            tb = tb.tb_next
    assert tally.get(id(cancelled)) == 200, tally
    assert id(resolved) not in tally and "WakeupFuture" not in tally, tally


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_loop_run_inside_an_except_block_chains_cancellations_as_natively(loop_name):
    """The cancelled stand-in raises its CancelledError in C (`PyErr_SetObject`), which
    chains the exception being handled: a loop run inside an `except` block. A native
    coroutine's is chained the same way; what the task finally raises too."""

    def scenario(kind):
        seen = []

        async def wrapper(trigger):
            try:
                await trigger.wait()
            except asyncio.CancelledError as error:
                seen.append(type(error.__context__).__name__)
                raise

        async def main():
            task = asyncio.ensure_future(wrapper(make(kind)))
            await until(lambda: task._fut_waiter is not None)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError as error:
                seen.append(type(error.__context__).__name__)
            return seen

        try:
            raise KeyError("handled")
        except KeyError:
            return run_on_private_loop(loop_name, main)

    native = scenario("native")
    # The coroutine's cancellation chains the handled KeyError (what the task raises after it
    # is chained differently before 3.11: compared, not asserted).
    assert native[0][0] == "KeyError" and native[1] == [], native
    assert scenario("rust") == native


# ---- 5. Many tasks, threads, loops ----


def test_ten_thousand_wake_ups_and_cancels_interleaved_leak_no_stand_in_reference(
    loop_name,
):
    """10,000 tasks, woken, cancelled, cancelled with a message, woken then cancelled, in
    turn: each gets its own outcome, every wake-up without a message is handed one of the
    loop's two stand-ins, and their reference counts do not grow."""
    asyncio_only(loop_name)
    run_spied(loop_name, ten_thousand_wake_ups_and_cancels)


async def ten_thousand_wake_ups_and_cancels():
    loop = asyncio.get_running_loop()
    resolved, cancelled = await stand_ins()
    tally = count_only(loop)
    counts = (sys.getrefcount(resolved), sys.getrefcount(cancelled))
    count = 10_000
    triggers = [m.Trigger() for _ in range(count)]
    tasks = [loop.create_task(trigger.wait(i)) for i, trigger in enumerate(triggers)]
    await until(lambda: tasks[-1]._fut_waiter is not None)
    assert all(task._fut_waiter is not None for task in tasks)
    for i, (task, trigger) in enumerate(zip(tasks, triggers)):
        if i % 4 == 0:
            trigger.fire()
        elif i % 4 == 1:
            task.cancel()
        elif i % 4 == 2:
            task.cancel(f"m{i}")
        else:
            trigger.fire()
            task.cancel()
    await asyncio.wait(tasks)
    for i, task in enumerate(tasks):
        if i % 4 == 0:
            assert task.result() == i
        else:
            assert task.cancelled(), i
    del tasks, triggers, task
    gc.collect()
    after = (sys.getrefcount(resolved), sys.getrefcount(cancelled))
    assert all(abs(a - b) < 50 for a, b in zip(after, counts)), (counts, after)
    # Woken then cancelled: woken (full API) or cancelled first (the limited API delivers a
    # wake-up fired on the loop's thread a pass later).
    stand_in_wake_ups = (tally.get(id(resolved), 0), tally.get(id(cancelled), 0))
    assert min(stand_in_wake_ups) >= count // 4 and sum(stand_in_wake_ups) == count * 3 // 4
    assert tally.get("WakeupFuture") == count // 4, tally


def test_wake_ups_from_threads_interleaved_with_cancels(loop_name):
    """Storm: 1,000 Rust coroutines woken from 4 threads (with spurious and repeated wakes)
    while a quarter of their tasks are cancelled on the loop: every task ends once, with its
    value or cancelled, and was handed one of the loop's stand-ins; their reference counts
    stay put."""
    asyncio_only(loop_name)
    run_spied(loop_name, wake_ups_from_threads_interleaved_with_cancels)


async def wake_ups_from_threads_interleaved_with_cancels():
    loop = asyncio.get_running_loop()
    resolved, cancelled = await stand_ins()
    tally = count_only(loop)
    counts = (sys.getrefcount(resolved), sys.getrefcount(cancelled))
    count = 1000
    storm = m.Storm(count)
    tasks = [asyncio.ensure_future(storm.wait(i)) for i in range(count)]
    await until(lambda: all(task._fut_waiter is not None for task in tasks))
    for task in tasks[::8]:
        task.cancel()
    storm.fire_from_threads(4, 2, 3)
    for task in tasks[4::8]:
        task.cancel()
    await until_threads(lambda: all(task.done() for task in tasks), seconds=60)
    for i, task in enumerate(tasks):
        if i % 8 == 0:
            assert task.cancelled(), i
        elif i % 8 != 4:
            assert task.result() == i
        else:
            assert task.cancelled() or task.result() == i
    completions = storm.completions()
    assert all(done <= 1 for done in completions)
    assert all(completions[i] == 1 for i in range(count) if i % 4)
    single = [m.Trigger() for _ in range(20)]
    single_tasks = [asyncio.ensure_future(t.wait(i)) for i, t in enumerate(single)]
    await until(lambda: all(task._fut_waiter is not None for task in single_tasks))
    for trigger in single:
        trigger.fire_from_thread()
    assert await asyncio.gather(*single_tasks) == list(range(20))
    del tasks, single_tasks, task
    gc.collect()
    after = (sys.getrefcount(resolved), sys.getrefcount(cancelled))
    assert all(abs(a - b) < 50 for a, b in zip(after, counts)), (counts, after)
    # At least one wake-up per task (the storm's and the 20 single ones; a spurious wake
    # steps a task once more), each handed a stand-in: no cancellation has a message.
    assert tally.get(id(resolved), 0) + tally.get(id(cancelled), 0) >= count + 20, tally
    assert tally.get(id(cancelled), 0) >= count // 8 and "WakeupFuture" not in tally, tally


def cycles(count):
    """Woken and cancelled Rust coroutines on the running loop; the outcomes."""

    async def main():
        results = []
        for i in range(count):
            trigger = m.Trigger()
            task = asyncio.get_running_loop().create_task(trigger.wait(i))
            await until(lambda: task._fut_waiter is not None)
            if i % 3 == 0:
                trigger.fire()
            elif i % 3 == 1:
                task.cancel()
            else:
                task.cancel("m")
            results.append(await outcome(task))
        return results

    return main


def expected_cycles(count):
    return [
        ("value", i) if i % 3 == 0 else (cancelled_with("m") if i % 3 == 2 else ("cancelled", ()))
        for i in range(count)
    ]


def loop_serving(count):
    """`main` for a spying loop: its stand-ins, then `count` woken and cancelled Rust
    coroutines counted (`count_only`); the outcomes, the counts, the stand-ins' reference
    counts before and after, the stand-ins, and the loop held weakly."""

    async def main():
        loop = asyncio.get_running_loop()
        pair = await stand_ins()
        tally = count_only(loop)
        before = tuple(map(sys.getrefcount, pair))
        results = await cycles(count)()
        after = tuple(map(sys.getrefcount, pair))
        return results, tally, (before, after), pair, weakref.ref(loop)

    return main


def collected(refs):
    """Whether every object `refs` (weak references) referred to is gone after a collection."""
    gc.collect()
    return [ref() is None for ref in refs] == [True] * len(refs)


@py311  # asyncio.Runner
def test_loops_of_their_own_in_threads_get_a_pair_of_stand_ins_each():
    """Four threads, each running its own spying asyncio or uvloop loop at the same time as
    the others, wake and cancel Rust coroutines: each loop is handed a pair of stand-ins of
    its own (the same two at all its wake-ups, futures of that loop), no two loops share
    one, their reference counts stay put, and each pair is collected with its loop."""
    count = 300
    served = {}
    start = threading.Barrier(4)

    def run(index):
        factory = SPYING_LOOPS["uvloop" if index % 2 else "asyncio"]
        start.wait()
        with asyncio.Runner(loop_factory=factory) as runner:
            served[index] = runner.run(loop_serving(count)())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(not thread.is_alive() for thread in threads)
    assert sorted(served) == list(range(4))
    pairs = []
    for results, tally, (before, after), pair, loop in served.values():
        assert results == expected_cycles(count)
        assert all(abs(a - b) < 50 for a, b in zip(after, before)), (before, after)
        assert [stand_in.get_loop() is loop() for stand_in in pair] == [True, True]
        counted = [tally.get(id(pair[0])), tally.get(id(pair[1])), tally.get("WakeupFuture")]
        assert counted == [count // 3] * 3, tally
        pairs.append(pair)
    assert len({id(stand_in) for pair in pairs for stand_in in pair}) == 8
    refs = [weakref.ref(stand_in) for pair in pairs for stand_in in pair]
    refs += [loop for *_, loop in served.values()]
    del served, pairs, pair, results, tally, loop
    assert collected(refs), "a closed loop or its stand-ins outlived it"


@py311  # asyncio.Runner
@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_runners_finishing_with_parked_tasks_twice_in_one_process(loop_name):
    """Two runs in turn, each leaving 500 Rust coroutines parked (and 500 woken but not yet
    stepped) when its main coroutine returns: the runner cancels them quietly both times,
    handing each the stand-ins of its loop; each run's loop has a pair of its own, collected
    with it."""
    factory = SPYING_LOOPS[loop_name]
    pairs = []
    refs = []
    for _ in range(2):
        errors = []
        tasks = []
        served = []

        async def main():
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda _l, c: errors.append(c))
            pair = await stand_ins()
            served.append((pair, count_only(loop), weakref.ref(loop)))
            triggers = [m.Trigger() for _ in range(1000)]
            tasks.extend(asyncio.ensure_future(t.wait(i)) for i, t in enumerate(triggers))
            await until(lambda: all(task._fut_waiter is not None for task in tasks))
            for trigger in triggers[::2]:
                trigger.fire()
            return await cycles(30)()

        with asyncio.Runner(loop_factory=factory) as runner:
            assert runner.run(main()) == expected_cycles(30)
        assert errors == []
        assert all(task.done() for task in tasks)
        assert all(task.cancelled() for task in tasks[1::2])
        assert all(task.cancelled() or task.result() == i for i, task in enumerate(tasks))
        (pair, tally, loop), = served
        assert [stand_in.get_loop() is loop() for stand_in in pair] == [True, True]
        # The runner's cancellations of the 500 parked tasks too.
        assert tally.get(id(pair[0]), 0) >= 500 + 10 and tally.get(id(pair[1]), 0) >= 500 + 10
        pairs.append(pair)
        refs += [weakref.ref(pair[0]), weakref.ref(pair[1]), loop]
        del tasks, served, pair, loop
    assert pairs[0][0] is not pairs[1][0] and pairs[0][1] is not pairs[1][1]
    del pairs
    assert collected(refs), "a closed loop or its stand-ins outlived it"


@py311  # asyncio.Runner
def test_a_fresh_process_serves_two_asyncio_runs_and_a_thread_with_a_pair_of_stand_ins_each():
    """In a fresh interpreter (no stand-ins made yet): the first wake-up of each loop makes
    its pair, in a first `asyncio.run`, a second one, and a thread's: each loop is handed two
    stand-ins of its own, futures of that loop."""
    out = run_script(
        r"""
        import asyncio, threading
        import pyo3_async_pytests as m

        class SpyingLoop(asyncio.SelectorEventLoop):
            def call_soon(self, callback, *args, context=None):
                if getattr(callback, "__name__", None) == "task_wakeup":
                    handed.append((self, args[0]))
                return super().call_soon(callback, *args, context=context)

        handed = []

        async def main():
            out = []
            for how in ("fire", "cancel", "message"):
                trigger = m.Trigger()
                task = asyncio.get_running_loop().create_task(trigger.wait("v"))
                while task._fut_waiter is None:
                    await asyncio.sleep(0)
                if how == "fire":
                    trigger.fire()
                else:
                    task.cancel(None if how == "cancel" else "m")
                try:
                    out.append(await task)
                except asyncio.CancelledError as error:
                    out.append(error.args)
            return out

        def run():
            with asyncio.Runner(loop_factory=SpyingLoop) as runner:
                return runner.run(main())

        results = [run(), run()]
        thread = threading.Thread(target=lambda: results.append(run()))
        thread.start()
        thread.join()
        # `handed` keeps every loop and argument alive: no id is reused.
        stand_ins = [(loop, f) for loop, f in handed if type(f).__name__ == "Future"]
        loops = {id(loop) for loop, _ in handed}
        print(repr((
            results,
            len(loops),
            len(stand_ins),
            len({id(f) for _, f in stand_ins}),
            sorted(len({id(f) for loop, f in stand_ins if id(loop) == key}) for key in loops),
            all(f.get_loop() is loop for loop, f in stand_ins),
            sum(type(f).__name__ == "WakeupFuture" for _, f in handed),
        )))
        """
    )
    last = out.splitlines()[-1]
    seen = eval(last)  # noqa: S307 (our print)
    results, loops, stand_ins, distinct, per_loop, own_loop, wakeup_futures = seen
    assert results == [["v", (), cancelled_with("m")[1]]] * 3
    # Per run: the resolved and the cancelled stand-in of its loop; the cancellation with a
    # message hands the WakeupFuture itself.
    assert (loops, stand_ins, distinct, per_loop) == (3, 6, 6, [2, 2, 2])
    assert (own_loop, wakeup_futures) == (True, 3)


def test_without_the_c_asyncio_module_rust_coroutines_wake_and_cancel():
    """A process whose asyncio runs without `_asyncio` (pure-Python tasks and futures): no
    stand-in can be made or used; wake-ups and cancels work as before."""
    out = run_script(
        """
        import sys
        sys.modules["_asyncio"] = None
        import asyncio
        import pyo3_async_pytests as m

        async def main():
            out = []
            for how in ("fire", "cancel", "message") * 2:
                trigger = m.Trigger()
                task = asyncio.get_running_loop().create_task(trigger.wait("v"))
                while task._fut_waiter is None:
                    await asyncio.sleep(0)
                if how == "fire":
                    trigger.fire()
                else:
                    task.cancel(None if how == "cancel" else "m")
                try:
                    out.append(await task)
                except asyncio.CancelledError as error:
                    out.append(error.args)
            return out

        print(repr((asyncio.Task.__module__, asyncio.run(main()))))
        """
    )
    message = cancelled_with("m")[1]
    assert eval(out.splitlines()[-1]) == ("asyncio.tasks", ["v", (), message] * 2)  # noqa: S307


# ---- 6. anyio on asyncio (and trio), profilers, the collector ----


async def test_anyio_scopes_cancel_many_parked_rust_coroutines_as_native(loop_name):
    """An anyio task group of 300 Rust coroutines and 300 native waits, cancelled by its
    scope; then a move_on_after(0) over one: all cancelled, nothing left over, the host's
    asyncio cancellation count back where it was."""

    async def scenario(kind):
        done = []

        async def child(i):
            if kind == "rust":
                await m.Trigger().wait(i)
            else:
                await anyio.Event().wait()
            done.append(i)

        async with anyio.create_task_group() as group:
            for i in range(300):
                group.start_soon(child, i)
            await anyio.lowlevel.checkpoint()
            group.cancel_scope.cancel()
        with anyio.move_on_after(0) as scope:
            await (m.Trigger().wait() if kind == "rust" else anyio.Event().wait())
        counts = ()
        if loop_name != "trio" and sys.version_info >= (3, 11):
            counts = (asyncio.current_task().cancelling(),)
        return done, scope.cancelled_caught, counts

    native = await scenario("native")
    assert await scenario("rust") == native
    assert native[:2] == ([], True) and native[2] in ((), (0,))


def test_a_profiler_sees_no_stand_in_in_its_events_or_the_frames_it_is_shown(loop_name):
    """`sys.setprofile` during wake-ups and cancels: no event's argument, and no local of a
    frame it is shown, is one of the loop's stand-ins (the wake-up's argument stays inside the
    loop's handle). The stand-ins are held weakly here: this test's own frame must not
    count."""
    asyncio_only(loop_name)
    run_spied(loop_name, a_profiler_sees_no_stand_in)


async def a_profiler_sees_no_stand_in():
    loop = asyncio.get_running_loop()
    targets = [weakref.ref(stand_in) for stand_in in await stand_ins()]
    tally = count_only(loop)
    leaked = []

    def is_stand_in(value):
        return any(value is target() for target in targets)

    def profile(frame, event, arg):
        if is_stand_in(arg):
            leaked.append((event, frame.f_code.co_name))
        if frame.f_code is SPY_CODE:
            return  # the spying loop's call_soon is handed the stand-ins (section 1)
        for name, value in frame.f_locals.items():
            if is_stand_in(value):
                leaked.append((event, frame.f_code.co_name, name))

    results = []
    sys.setprofile(profile)
    try:
        for how in ("fire", "cancel", "fire", "cancel"):
            task, trigger, _ = await parked("rust")
            trigger.fire() if how == "fire" else task.cancel()
            results.append(await outcome(task))
    finally:
        sys.setprofile(None)
    assert results == [("value", "woken"), ("cancelled", ())] * 2
    assert leaked == []
    assert all(target() is not None for target in targets), "made once, kept by the loop"
    assert [tally.get(id(target())) for target in targets] == [2, 2], "handed meanwhile"


def referrers_of(target):
    """What the collector finds referring to `target()` (a frame running this holds it in
    no object the collector sees), but this file's records of what spying loops saw (kept
    by earlier tests' tracebacks)."""
    return [r for r in gc.get_referrers(target()) if type(r) is not Spied]


def test_nothing_but_the_loops_home_holds_its_stand_ins_after_wake_ups(loop_name):
    """After wake-ups and cancels, the collector finds nothing referring to one of the loop's
    stand-ins (no task, coroutine, handle, exception or traceback) but the watcher of the
    loop's home (which reports the home's objects once it is the home's only owner), and
    both are unchanged: no callback added, outcome as made."""
    asyncio_only(loop_name)
    run_spied(loop_name, nothing_but_the_loops_home_holds_its_stand_ins)


async def nothing_but_the_loops_home_holds_its_stand_ins():
    loop = asyncio.get_running_loop()
    targets = [weakref.ref(stand_in) for stand_in in await stand_ins()]
    tally = count_only(loop)
    for how in ("fire", "cancel") * 20:
        task, trigger, _ = await parked("rust")
        trigger.fire() if how == "fire" else task.cancel()
        await outcome(task)
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    referrers = [referrers_of(target) for target in targets]
    assert all(type(r).__name__ == "Drain" for found in referrers for r in found), referrers
    resolved, cancelled = (target() for target in targets)
    assert [tally.get(id(resolved)), tally.get(id(cancelled))] == [20, 20], tally
    assert resolved.result() is None and not resolved.cancelled()
    assert resolved.exception() is None and resolved._state == "FINISHED"
    assert cancelled.cancelled() and cancelled._cancel_message is None
    assert resolved._callbacks in (None, []) and cancelled._callbacks in (None, [])


def serve_and_drop(loop_name, how, keep=None):
    """Runs a spying loop (`how`: closed after `run_until_complete`, or an `asyncio.Runner`'s)
    whose Rust coroutines are woken and cancelled, all of its tasks done; its stand-ins and
    the loop, held weakly. `keep` ("rust" or "native"): a done task of that kind kept in an
    attribute of the loop (a cycle through the loop); "waiter": the `WakeupFuture` a done
    Rust task waited on; "parked": a Rust task still parked when the loop closes."""

    async def main():
        loop = asyncio.get_running_loop()
        pair = await stand_ins()
        tally = count_only(loop)
        assert await cycles(6)() == expected_cycles(6)
        assert [tally.get(id(pair[0])), tally.get(id(pair[1]))] == [2, 2], tally
        if keep == "parked":
            task, _, _ = await parked("rust")
            loop.kept = task
        elif keep is not None:
            task, trigger, waiter = await parked("rust" if keep == "waiter" else keep)
            trigger.fire()
            assert await outcome(task) == ("value", "woken")
            loop.kept = waiter if keep == "waiter" else task
        return [weakref.ref(pair[0]), weakref.ref(pair[1]), weakref.ref(loop)]

    factory = SPYING_LOOPS[loop_name]
    if how == "runner":
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main())
    loop = factory()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


@pytest.mark.parametrize("how", ["closed", pytest.param("runner", marks=py311)])
@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_closed_and_dropped_loops_stand_ins_are_collected_with_it(loop_name, how):
    """A loop's stand-ins hold the loop and its home holds them (a cycle through Rust, which
    the home's watcher reports): once the loop is closed, its tasks done and nothing else
    refers to it, a collection frees the loop and its two stand-ins. The same with a done
    native task kept by the loop (a cycle through Python alone)."""
    for keep in (None, "native"):
        refs = serve_and_drop(loop_name, how, keep)
        assert collected(refs), (keep, [ref() is None for ref in refs])


@pytest.mark.parametrize("keep", ["rust", "waiter", "parked"])
@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_closed_loop_that_keeps_a_rust_task_or_its_waiter_is_collected(loop_name, keep):
    """Found in round 12 (older than the stand-ins): a closed loop that kept a done Rust task
    (or the `WakeupFuture` it waited on) was never collected, nor its stand-ins: the finished
    coroutine's parker and the future held the loop's home, which holds the loop, and neither
    reported it. A finished coroutine now lets go of its parker, and a future that is its
    home's sole owner reports the home's objects. A task still parked when the loop closes is
    ended by the loop's death, and collected the same way."""
    refs = serve_and_drop(loop_name, "closed", keep=keep)
    assert collected(refs), [ref() is None for ref in refs]

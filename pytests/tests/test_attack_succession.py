"""Attack on home succession (src/home/succession.rs `Home::lost`, src/home/mod.rs,
src/home/drain.rs, src/backend/asyncio.rs `successor`): the program takes a home's reader or
keeper away while its asyncio/uvloop loop runs on, and the home hands over to a successor.

`kill` takes the reader (`remove_reader`) or the keeper timer (`cancel()`) away, as round 14
does; four loop kinds: `asyncio` (a watching SelectorEventLoop), `keeper` (no `add_reader`),
`uvloop`, `uvloop-keeper`. Every wait is bounded in seconds; counts are compared by deltas.

FOUND, and what became of them:
1. FIXED. STALE: an `EventLoop` handle (`EventLoop::current`, `EventLoop::asyncio`) taken
   before a
   succession calls the running loop closed. It keeps the old home; `Backend::check_open`
   (src/backend/mod.rs) and `Launch::start` (src/backend/launch.rs) read `home.is_dead()`,
   which is true for a home that handed over. `spawn` from another thread fails at once,
   `spawn_with`'s job is passed on to the successor and then refused by `Launch::start`:
   every Rust thread or tokio task that holds a handle gets "the event loop is closed"
   from then on (`spawn_from_tokio`, `spawn_with_from_tokio`, `spawn_guarded_from_tokio`,
   `context_leaks`). All four loop kinds, all three environments. Fixed: a home that handed
   over is not dead (`Home::is_dead`) until the last of its successors is.
2. FIXED (the guard is per loop now). GUARD: `SUCCEEDING` is one flag per thread, not per loop. While loop A's successor is
   made (its `add_reader`, or a `__del__` that a collection runs meanwhile), another loop B,
   running on another thread, loses its home there: B's home dies plainly, and
   `Driver::loop_died` on a thread that does not run B ends B's parked coroutine (the task
   is stranded: its wake-up never comes, and cancelling it fails with "cannot reuse already
   awaited coroutine"). The same kill outside A's succession hands over (control).
3. FIXED (the successor keeps its predecessor's record: `backend::asyncio::successor`). SHUTDOWN: a successor got a fresh `AsyncioShutdown` record (`closing` False, a new
   sentinel): a succession after `asyncio.run`/`Runner` called `shutdown_asyncgens()` (here
   in `shutdown_default_executor`) lets Python work sent from Rust start on the shutting-
   down loop instead of being refused ("the event loop is shutting down"); the task is left
   pending and `close()` reports "Task was destroyed but it is pending!". Without the
   succession it is refused (control).
4. FIXED (`Drain::drop` keeps the exception in flight around the hand-over). INTERRUPT: `Drain::drop` runs `Home::lost` while the drain's own exception is in flight.
   A job of the drain removes the home's reader (the reader is let go of when the drain
   returns) and a later one raises `KeyboardInterrupt` (here: the loop's `call_soon`; as
   Ctrl-C between jobs would): the drain returns the error, the reader's `Drain` is
   dropped while the interrupt is the thread's current exception, `lost` calls
   `is_running()` etc. with it set, which fails (no successor: the home dies plainly) and
   clears it. The KeyboardInterrupt is lost, asyncio reports "SystemError: error return
   without exception set" to the exception handler (uvloop: an unraisable SystemError),
   and the running loop has no home watching it. Watching loops (asyncio, uvloop); the
   keeper loops hold (their keeper is dropped inside `cancel()`, no exception in flight).
5. FIXED (a home holds its successor strongly). UNKEPT: a successor the loop refuses a keeper (no `add_reader`, and `call_later` of the
   keeper raises) has no owner at all: `Home::lost` keeps it weakly (`successor: Weak`), so
   it is freed as soon as `lost` returns, with the dependents moved to it. The old home then
   drops what it is sent (`pass_on`): a thread's wake-up of a task parked before the death
   is lost and the task hangs. (The root of round 14's CHAIN, reached by one succession.)

Tried, and held (passing tests): a loop whose `add_reader` refuses the successor falls back
to a keeper and delivers; deaths from another thread while the loop runs, uvloop included
(in a fresh interpreter), in debug mode or not; a death in debug mode on the loop's thread;
from an `add_signal_handler` callback; from a Python signal handler run while wake-ups from
threads are drained; from a `__del__` during a collection; a chain of successions where
each generation has a task parked on it (wake-ups sent to the oldest home reach every
task); 300 deaths in a row (no fd, home or sentinel left behind, new coroutines work);
tokio threads hammering wake-ups (`WakerStash.wake_from_threads`, `sleep`) across a death; a
thread blocked in `sync_await_on` across a death; cancelling a Rust join (`await_all`) or a
`take_async_iter` after the death (the Python tasks are cancelled, the generator's `finally`
runs, no pump left); a death from another thread, then `close()` (the coroutine ends, loop
and task collected); a loop dropped without `close()` after a succession is collected
exactly when it would be without one; anyio on asyncio and uvloop.
"""

import asyncio
import contextvars
import gc
import os
import signal
import sys
import threading
import warnings
import weakref

import anyio
import pytest

import pyo3_async_pytests as m

from helpers import park_once, run_isolated, until, until_threads
from test_attack_keeper import drain_fds
from test_attack_round13 import collected
from test_attack_round14 import (
    ASYNCIO_LOOPS,
    FACTORIES,
    LOOPS,
    RecNoReaderUvloop,
    Watched,
    kill,
    live_keepers,
    run_clean,
    served,
    watch,
)
from test_attack_wakeup_future import outcome, parked

CLOSED = ("error", "RuntimeError", "the event loop is closed (or the trio run has finished)")
SHUTTING_DOWN = (
    "error",
    "RuntimeError",
    "the event loop is shutting down (asyncio.run is finishing): no new Python work starts on it",
)


# ---- loops and the kill: round 14's ----


WATCHING = ["asyncio", "uvloop"]
KEEPING = ["keeper", "uvloop-keeper"]


def close(loop):
    loop.close()
    if isinstance(loop, RecNoReaderUvloop):
        loop.keeper = None  # uvloop's handle holds the loop: a cycle gc cannot see


async def settle(task, seconds=30):
    """The task's outcome, once done within `seconds` (a bound on a hang)."""
    await until_threads(task.done, seconds)
    return await outcome(task)


async def settled_or_hung(task, seconds):
    """The task's outcome, or "hung" if it is not done within `seconds` (then cancelled)."""
    try:
        await until_threads(task.done, seconds)
    except AssertionError:
        task.cancel()
        await until_threads(task.done, 30)
        return "hung"
    return await outcome(task)


async def stays_parked(pairs, passes=20):
    for step in range(passes + 1):
        for task, waiter in pairs:
            assert task._fut_waiter is waiter, (step, task, waiter)
            assert not waiter.done() and not task.done(), (step, task, waiter)
        if step < passes:
            await asyncio.sleep(0)


def others():
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


# ---- FOUND 1: an EventLoop handle taken before the succession ----


# FIXED (was: a wrong error): an EventLoop handle taken before a succession keeps the old home,
# and Backend::check_open (src/backend/mod.rs) and Launch::start (src/backend/launch.rs) read
# home.is_dead(), true for a home that handed over: spawn from another thread fails at once,
# spawn_with's job is passed on to the successor and then refused, both with RuntimeError('the
# event loop is closed (or the trio run has finished)') while the loop runs


@pytest.mark.parametrize("name", LOOPS)
@pytest.mark.parametrize("which", ["spawn", "spawn_with", "guarded", "context_leaks"])
def test_an_event_loop_handle_taken_before_the_succession_still_reaches_the_loop(name, which):
    """The handle is taken (EventLoop::current) when the Python call is made, on the loop's
    thread; the home is killed right after, before the loop runs again; the handle's work
    arrives from a tokio thread."""

    async def main(loop):
        done = loop.create_future()
        done.set_result(7)  # an awaitable that the tokio thread may drop unawaited

        async def child():
            return 7

        if which == "spawn":
            coro = m.spawn_from_tokio(done)  # EventLoop::spawn on a tokio thread
        elif which == "spawn_with":
            coro = m.spawn_with_from_tokio(child)  # EventLoop::spawn_with
        elif which == "guarded":
            coro = m.spawn_guarded_from_tokio(lambda: done)
        else:
            var = contextvars.ContextVar("succession")

            def read(v):  # on a tokio thread: what the task's own context holds
                future = loop.create_future()
                future.set_result(v.get())
                return future

            coro = m.context_leaks(var, read, 4)  # the handle is used once it is polled
        kill(loop)
        return await asyncio.wait_for(outcome(coro), 30)

    got = run_clean(name, main)
    assert got == ("value", 0 if which == "context_leaks" else 7), got


# ---- FOUND 2: the recursion guard is thread-wide ----


# FIXED (was: a stranded task): SUCCEEDING (src/home/succession.rs) is one flag per thread, not
# per loop. While loop A's successor is made (its add_reader, or a __del__ run by a collection
# meanwhile), loop B, running on another thread, loses its home: B's home dies plainly (no
# successor), and Driver::loop_died on a thread that does not run B ends B's parked coroutine:
# its wake-up never comes and cancelling the task fails with RuntimeError('cannot reuse already
# awaited coroutine'). The same kill outside A's succession hands over


def hooking(base):
    """A loop of `base` that runs `hook()` (once) when a home's drain is handed to its
    `add_reader`: inside the making of a successor."""

    class Hooking(base):
        hook = None

        def add_reader(self, fd, callback, *args):
            if self.hook is not None and type(callback).__name__ == "Drain":
                hook, self.hook = self.hook, None
                hook()
            return super().add_reader(fd, callback, *args)

    Hooking.__name__ = f"Hooking{base.__name__}"
    return Hooking


class KillsOnDel:
    def __init__(self, action):
        self.action = action
        self.cycle = self

    def __del__(self):
        self.action()


@pytest.mark.parametrize("name", LOOPS)
@pytest.mark.parametrize("other", ASYNCIO_LOOPS)
@pytest.mark.parametrize(
    "how",
    [
        "plain",
        "add_reader",
        "gc_del",
    ],
)
def test_another_loop_killed_while_a_successor_is_made_hands_over_too(name, other, how):
    other_loop = FACTORIES[other]()
    other_reports = []
    other_loop.set_exception_handler(lambda _loop, context: other_reports.append(context))
    state = {}
    parked_there, killed = threading.Event(), threading.Event()

    def run_other():
        async def main():
            trigger = m.Trigger()
            task = other_loop.create_task(trigger.wait(1))
            await until(lambda: task._fut_waiter is not None)
            parked_there.set()
            await until_threads(killed.is_set, 30)
            state["coro"] = task.get_coro().cr_state
            if state["coro"] == "CORO_SUSPENDED":
                await until_threads(lambda: served(other_loop), 10)  # its successor
                trigger.fire_from_thread()
            else:
                task.cancel()
            state["got"] = await settle(task, 10)

        try:
            other_loop.run_until_complete(main())
        finally:
            close(other_loop)

    thread = threading.Thread(target=run_other)
    thread.start()
    try:

        async def main(loop):
            assert await park_once(1) == 1  # this loop's home
            await until_threads(parked_there.is_set, 30)

            def kill_other():
                kill(other_loop, at_once=False)

            if how == "plain":
                kill_other()
            elif how == "add_reader":
                loop.hook = kill_other
            else:

                def collect():
                    KillsOnDel(kill_other)
                    gc.collect()

                loop.hook = collect
            if how != "plain":
                kill(loop)  # the successor's add_reader runs the hook
                assert loop.hook is None
            killed.set()
            return await asyncio.wait_for(outcome(m.sleep(0.001, 2)), 30)

        got = run_clean(name, main, factory=hooking(FACTORIES[name]))
    finally:
        killed.set()
        thread.join(30)
    assert not thread.is_alive()
    assert got == ("value", 2)
    assert other_reports == []
    assert state == {"coro": "CORO_SUSPENDED", "got": ("value", 1)}, state


# ---- FOUND 3: a succession while asyncio.run shuts the loop down ----


# FIXED (was: work started on a shutting-down loop): a successor got a fresh AsyncioShutdown
# record (closing False, a new sentinel registered after shutdown_asyncgens): after a
# succession in shutdown_default_executor, Python work sent from Rust (spawn_with_from_tokio)
# started as a task instead of failing with 'the event loop is shutting down', was never
# awaited, and close() reported 'Task was destroyed but it is pending!'. The successor now
# keeps its predecessor's record.


def cancelled_work(events, tag):
    """A coroutine function that waits until cancelled, then takes a step of cleanup and
    appends `tag` to `events`."""

    async def body():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # its cleanup takes a step
            events.append(tag)
            raise

    return body


def run_in_runner(factory, main, watched):
    """Runs `main` in an `asyncio.Runner` on a loop from `factory`, the unraisables recorded
    in `watched`; then drops the loop and collects."""
    old = watched.hook()
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main)
            loop = runner.get_loop()
        if isinstance(loop, RecNoReaderUvloop):
            loop.keeper = None  # uvloop's handle holds the loop: a cycle gc cannot see
        del loop
        gc.collect()
    finally:
        sys.unraisablehook = old


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is 3.11's")
@pytest.mark.parametrize("name", LOOPS)
@pytest.mark.parametrize("killed", [False, True])
def test_python_work_sent_while_the_runner_shuts_down_is_refused(name, killed):
    got, started = {}, []
    watched = Watched()

    class Ending(FACTORIES[name]):
        async def shutdown_default_executor(self, *args, **kwargs):
            if killed:
                kill(self)

            async def child():
                started.append(1)
                await asyncio.Event().wait()

            spawned = asyncio.ensure_future(outcome(m.spawn_with_from_tokio(child)))
            await until_threads(lambda: spawned.done() or started, 30)
            if not spawned.done():  # started: let it go, so that nothing is left pending
                for task in others():
                    task.cancel()
                await until_threads(spawned.done, 30)
            got["spawn"] = spawned.result()
            await super().shutdown_default_executor(*args, **kwargs)

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: watched.reports.append(context))
        assert await park_once(1) == 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_in_runner(Ending, main(), watched)
    resource = [str(w.message) for w in caught if "shutdown_asyncgens" in str(w.message)]
    messages = watched.messages()
    watched.reports.clear()
    assert (got, started) == ({"spawn": SHUTTING_DOWN}, []), (got, started)
    assert messages == [] and watched.unraisable == [] and resource == [], (
        messages,
        watched.unraisable,
        resource,
    )


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is 3.11's")
@pytest.mark.parametrize("name", LOOPS)
def test_work_started_around_a_succession_during_shutdown_is_cancelled_and_awaited(name):
    """Rust-owned Python work started by a task the runner cancels, once before and once after
    the home hands over (the runner knows neither task): the shutdown record the two homes
    share cancels and awaits both, and nothing is reported."""
    events = []
    watched = Watched()

    def work(tag):
        return cancelled_work(events, tag)

    async def victim(started):
        try:
            started.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            m.spawn_detached(work("before"))
            kill(asyncio.get_running_loop())
            m.spawn_detached(work("after"))
            raise

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: watched.reports.append(context))
        assert await park_once(1) == 1
        started = asyncio.Event()
        asyncio.ensure_future(victim(started))
        await started.wait()

    run_in_runner(FACTORIES[name], main(), watched)
    assert sorted(m.detached_outcomes(2)) == ["CancelledError", "CancelledError"]
    assert sorted(events) == ["after", "before"]
    assert watched.messages() == [] and watched.unraisable == [], (
        watched.messages(),
        watched.unraisable,
    )


# ---- FOUND 4: an interrupt from the drain that lost its reader ----


# FIXED (was: a lost KeyboardInterrupt): Drain::drop (src/home/drain.rs) runs Home::lost while
# the drain's own exception is in flight. A job of the drain removed the home's reader (let go
# of when the drain returns) and a later one raised KeyboardInterrupt: the drain returns it, the
# reader's Drain is dropped with the interrupt set as the thread's exception, and lost's Python
# calls (is_running, add_reader) fail and clear it: no successor (the home dies plainly, the
# running loop has no reader), the interrupt is lost, and asyncio reports SystemError('error
# return without exception set') to the exception handler (uvloop: an unraisable SystemError)


def interrupting(base):
    """A loop of `base` whose `call_soon`, scheduling `target`'s wake-up, schedules it, then
    kills the home (from inside the home's drain) and raises KeyboardInterrupt."""

    class Interrupting(base):
        target = None

        def call_soon(self, callback, *args, context=None):
            if self.target is not None and getattr(callback, "__self__", None) is self.target:
                self.target = None
                super().call_soon(callback, *args, context=context)
                kill(self, at_once=False)
                raise KeyboardInterrupt("from call_soon")
            return super().call_soon(callback, *args, context=context)

    Interrupting.__name__ = f"Interrupting{base.__name__}"
    return Interrupting


@pytest.mark.parametrize(
    "name",
    [
        name
        for name in LOOPS
    ],
)
def test_an_interrupt_raised_in_the_drain_that_lost_its_reader_propagates(name):
    loop = interrupting(FACTORIES[name])()
    watched = Watched()
    loop.set_exception_handler(lambda _loop, context: watched.reports.append(context))
    old = watched.hook()
    tasks = []
    try:

        async def first():
            tasks.extend([await parked("rust", i) for i in range(5)])
            loop.target = tasks[0][0]
            for _task, trigger, _waiter in tasks:
                trigger.fire_from_thread()  # the wake-ups queue on the home: one drain
            await until_threads(lambda: False, 5)  # ended by the interrupt

        first_task = loop.create_task(first())
        try:
            loop.run_until_complete(first_task)
            raised = None
        except BaseException as error:  # noqa: BLE001
            raised = (type(error).__name__, str(error))
        served_between = served(loop)
        first_task.cancel()

        async def second():
            return [await settle(task, 30) for task, _trigger, _waiter in tasks]

        got = loop.run_until_complete(second())
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        try:
            close(loop)
        finally:
            sys.unraisablehook = old
    reports = [(c.get("message"), repr(c.get("exception"))) for c in watched.reports]
    watched.reports.clear()
    assert got == [("value", i) for i in range(5)], got
    assert raised == ("KeyboardInterrupt", "from call_soon"), raised
    assert reports == [] and watched.unraisable == [], (reports, watched.unraisable)
    assert served_between


# ---- FOUND 5: a successor without a keeper ----


# FIXED (was: a lost wake-up): a successor whose keeper the loop refuses (no add_reader, and
# call_later raises for it) has no owner: Home::lost keeps it weakly, so it is freed when lost
# returns, with the dependents moved to it; the old home, which the parked task's WakeupFuture
# holds, drops the thread's wake-up (Home::pass_on) and the task hangs


def refusing_keepers(base):
    """A loop of `base` (no `add_reader`) that takes one keeper, and refuses the next ones."""

    class RefusingKeepers(base):
        kept = 0

        def call_later(self, delay, callback, *args, **kwargs):
            if type(callback).__name__ == "Drain":
                self.kept += 1
                if self.kept > 1:
                    raise NotImplementedError
            return super().call_later(delay, callback, *args, **kwargs)

    RefusingKeepers.__name__ = f"RefusingKeepers{base.__name__}"
    return RefusingKeepers


def refusing_readers(base):
    """A loop of `base` that takes one reader, and refuses the next ones (the successor
    falls back to a keeper)."""

    class RefusingReaders(base):
        watched = 0

        def add_reader(self, fd, callback, *args):
            if type(callback).__name__ == "Drain":
                self.watched += 1
                if self.watched > 1:
                    raise NotImplementedError
            return super().add_reader(fd, callback, *args)

    RefusingReaders.__name__ = f"RefusingReaders{base.__name__}"
    return RefusingReaders


@pytest.mark.parametrize(
    "name, refused",
    [
        ("keeper", "keeper"),
        ("uvloop-keeper", "keeper"),
        ("asyncio", "reader"),
        ("uvloop", "reader"),
    ],
)
def test_a_successor_the_loop_refuses_to_watch_still_delivers(name, refused):
    wrap = refusing_keepers if refused == "keeper" else refusing_readers

    async def main(loop):
        task, trigger, waiter = await parked("rust")
        kill(loop, at_once=False)
        if refused == "reader" and name == "asyncio":
            assert drain_fds(loop) == [] and len(live_keepers(loop)) == 1  # a keeper instead
        await stays_parked([(task, waiter)])
        new = await asyncio.wait_for(outcome(m.sleep(0.001, 2)), 30)
        trigger.fire_from_thread()
        return new, await settled_or_hung(task, 5)

    assert run_clean(name, main, factory=wrap(FACTORIES[name])) == (
        ("value", 2),
        ("value", "woken"),
    )


# ---- held: deaths from another thread, debug mode, signal handlers, __del__ ----


def kill_from_another_thread(name, debug):
    """Runs a loop of kind `name` in a thread, parks a task on it, kills its home from this
    thread while it runs; the task stays parked and is woken through the successor (from a
    thread and from the loop), new coroutines work. Module-level: also run in a fresh
    interpreter (uvloop is not thread-safe: a crash must fail the test, not the run)."""
    loop = FACTORIES[name]()
    loop.set_debug(debug)
    reports = []
    loop.set_exception_handler(lambda _loop, context: reports.append(context))
    ready, killed = threading.Event(), threading.Event()
    state = {}

    async def main():
        tasks = [await parked("rust", i) for i in range(2)]
        old = watch(loop)
        ready.set()
        await until_threads(killed.is_set, 30)
        await stays_parked([(t, w) for t, _trigger, w in tasks], passes=0)
        await until_threads(lambda: watch(loop) is not None and watch(loop) is not old, 30)
        await stays_parked([(t, w) for t, _trigger, w in tasks])
        state["new"] = await asyncio.wait_for(outcome(m.sleep(0.001, 2)), 30)
        tasks[0][1].fire_from_thread()
        tasks[1][1].fire()
        state["got"] = [await settle(t, 30) for t, _trigger, _w in tasks]

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()))
    thread.start()
    try:
        assert ready.wait(30)
        kill(loop, at_once=False)
    finally:
        killed.set()
        thread.join(30)
        close(loop)
    assert not thread.is_alive()
    assert [c.get("message") for c in reports] == [], reports
    assert state == {"new": ("value", 2), "got": [("value", 0), ("value", 1)]}, state


@pytest.mark.parametrize("name", LOOPS)
@pytest.mark.parametrize("debug", [False, True])
def test_death_from_another_thread_while_the_loop_runs(name, debug):
    if name.startswith("uvloop"):
        run_isolated(kill_from_another_thread, name, debug, timeout=120)
    else:
        kill_from_another_thread(name, debug)


@pytest.mark.parametrize("name", LOOPS)
def test_death_in_debug_mode(name):
    async def main(loop):
        loop.set_debug(True)
        loop.slow_callback_duration = 60  # a slow machine's pass is no report
        tasks = [await parked("rust", i) for i in range(3)]
        kill(loop)
        await stays_parked([(t, w) for t, _trigger, w in tasks])
        tasks[0][1].fire()
        tasks[1][1].fire_from_thread()
        tasks[2][0].cancel()
        got = [await settle(t, 30) for t, _trigger, _w in tasks]
        return got[:2], got[2][0]

    assert run_clean(name, main) == ([("value", 0), ("value", 1)], "cancelled")


@pytest.mark.parametrize("name", LOOPS)
def test_death_from_a_signal_handler_of_the_loop(name):
    """`add_signal_handler`: the handler is a callback the loop runs from its own wake-up."""

    async def main(loop):
        task, trigger, waiter = await parked("rust")
        killed = []
        loop.add_signal_handler(signal.SIGUSR1, lambda: killed.append(kill(loop)))
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            await until_threads(lambda: killed, 30)
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)
        await stays_parked([(task, waiter)])
        trigger.fire_from_thread()
        return await settle(task, 30)

    assert run_clean(name, main) == ("value", "woken")


@pytest.mark.parametrize("name", LOOPS)
def test_death_from_a_python_signal_handler_while_wake_ups_are_drained(name):
    """A Python signal handler, sent from a thread while wake-ups from threads are queued,
    removes the reader wherever the interpreter runs it (between the drain's jobs, if it is
    pending then): every wake-up is delivered, the successor serves the rest."""

    async def main(loop):
        tasks = [await parked("rust", i) for i in range(20)]
        other, other_trigger, other_waiter = await parked("rust", "other")
        killed = []

        def handler(_signum, _frame):
            if not killed:
                killed.append(1)
                kill(loop, at_once=False)

        old = signal.signal(signal.SIGUSR2, handler)
        try:
            for _task, trigger, _waiter in tasks:
                trigger.fire_from_thread()
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR2)
            got = [await settle(t, 30) for t, _trigger, _w in tasks]
            await until_threads(lambda: killed, 30)
        finally:
            signal.signal(signal.SIGUSR2, old)
        await until_threads(lambda: served(loop), 30)
        await stays_parked([(other, other_waiter)])
        other_trigger.fire_from_thread()
        return got, await settle(other, 30)

    got, other = run_clean(name, main)
    assert got == [("value", i) for i in range(20)] and other == ("value", "other")


@pytest.mark.parametrize("name", LOOPS)
def test_death_from_a_del_during_a_collection(name):
    async def main(loop):
        task, trigger, waiter = await parked("rust")
        KillsOnDel(lambda: kill(loop))
        gc.collect()
        assert served(loop)
        await stays_parked([(task, waiter)])
        trigger.fire_from_thread()
        return await settle(task, 30), await asyncio.wait_for(outcome(m.sleep(0.001, 2)), 30)

    assert run_clean(name, main) == (("value", "woken"), ("value", 2))


# ---- held: chains with holders, many deaths, storms ----


@pytest.mark.parametrize("name", LOOPS)
def test_a_chain_with_a_task_parked_on_every_generation_delivers_through_the_oldest(name):
    """old -> A -> B -> C, each generation held by a task parked on it: a wake-up sent to the
    oldest home passes along the chain (every link is alive), as do the others."""

    async def main(loop):
        base = m.pyo3_async_stats()["loops"]
        generations = []
        for _ in range(4):
            generations.append(await parked("rust", len(generations)))
            kill(loop)
        waiting = [(t, w) for t, _trigger, w in generations]
        await stays_parked(waiting)
        for _task, trigger, _waiter in reversed(generations):
            trigger.fire_from_thread()
        got = [await settle(t, 30) for t, _trigger, _w in generations]
        del waiting, generations
        gc.collect()
        await until_threads(lambda: m.pyo3_async_stats()["loops"] <= base + 1, 30)
        return got

    assert run_clean(name, main) == [("value", i) for i in range(4)]


@pytest.mark.parametrize("name", LOOPS)
def test_three_hundred_deaths_in_a_row_leave_nothing_behind(name):
    async def main(loop):
        base = m.pyo3_async_stats()["loops"]
        assert await park_once(1) == 1
        fds = len(os.listdir("/proc/self/fd"))
        generators = len(getattr(loop, "_asyncgens", ()))
        for _ in range(300):
            kill(loop)
        gc.collect()
        new = await asyncio.wait_for(outcome(m.sleep(0.001, 2)), 30)
        task, trigger, _waiter = await parked("rust", 3)
        trigger.fire_from_thread()
        woken = await settle(task, 30)
        await until_threads(lambda: m.pyo3_async_stats()["loops"] <= base + 1, 30)
        return (
            new,
            woken,
            len(os.listdir("/proc/self/fd")) - fds,
            len(getattr(loop, "_asyncgens", ())) - generators,
        )

    assert run_clean(name, main) == (("value", 2), ("value", 3), 0, 0)


@pytest.mark.parametrize("name", LOOPS)
def test_tokio_threads_hammer_wake_ups_across_the_death(name):
    times = 100

    async def main(loop):
        stashes = [m.WakerStash() for _ in range(10)]
        stashed = [loop.create_task(s.wait(times)) for s in stashes]
        sleepers = [loop.create_task(m.sleep(0.001 * (i % 5), i)) for i in range(40)]
        await until(lambda: all(s.has_waker for s in stashes))
        threads = [
            threading.Thread(target=s.wake_from_threads, args=(times, 2)) for s in stashes
        ]
        for thread in threads:
            thread.start()
        kill(loop)
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads)
        return [await settle(t, 30) for t in stashed], [await settle(t, 30) for t in sleepers]

    stashed, sleepers = run_clean(name, main)
    assert stashed == [("value", None)] * 10
    assert sleepers == [("value", i) for i in range(40)]


# ---- held: Rust waiting for Python work, cancelled after the death ----


@pytest.mark.parametrize("name", LOOPS)
def test_a_thread_blocked_in_sync_await_on_across_the_death(name):
    async def main(loop):
        event = asyncio.Event()

        async def child():
            await event.wait()
            return 5

        result = {}
        thread = threading.Thread(
            target=lambda: result.setdefault("got", m.sync_await_on(loop, child()))
        )
        thread.start()
        await until_threads(lambda: len(others()) >= 1, 30)
        kill(loop)
        event.set()
        await until_threads(lambda: "got" in result, 30)
        thread.join(30)
        return result["got"]

    assert run_clean(name, main) == 5


@pytest.mark.parametrize("name", LOOPS)
def test_cancelling_a_rust_join_after_the_death_cancels_its_python_tasks(name):
    async def main(loop):
        log = []

        async def child():
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                log.append("cancelled")
                raise

        task = loop.create_task(m.await_all([child(), child()]))
        await until_threads(lambda: task._fut_waiter is not None and len(others()) >= 3, 30)
        children = [t for t in others() if t is not task]
        waiter = task._fut_waiter
        kill(loop)
        await stays_parked([(task, waiter)])
        task.cancel()
        got = await settle(task, 30)
        for child_task in children:
            await settle(child_task, 30)
        return got[0], log

    assert run_clean(name, main) == ("cancelled", ["cancelled", "cancelled"])


@pytest.mark.parametrize("name", LOOPS)
def test_cancelling_take_async_iter_after_the_death_closes_the_generator(name):
    async def main(loop):
        before = m.pyo3_async_stats()["async_iter_pumps"]
        log = []

        async def numbers():
            try:
                i = 0
                while True:
                    yield i
                    i += 1
                    await asyncio.sleep(0)
            finally:
                log.append("finally")

        iterator = numbers()
        task = loop.create_task(m.take_async_iter(iterator, 10**9))
        await until_threads(lambda: task._fut_waiter is not None and len(others()) >= 2, 30)
        kill(loop)
        task.cancel()
        got = await settle(task, 30)
        for other in others():
            await settle(other, 30)
        await until_threads(lambda: log, 30)
        await until_threads(lambda: m.pyo3_async_stats()["async_iter_pumps"] <= before, 30)
        return got[0], log, iterator.ag_frame is None

    assert run_clean(name, main) == ("cancelled", ["finally"], True)


# ---- held: close and collection after the death ----


@pytest.mark.parametrize("name", ASYNCIO_LOOPS)
def test_death_from_another_thread_then_close_ends_the_coroutine(name):
    before = m.pyo3_async_stats()
    loop = FACTORIES[name]()
    loop.set_exception_handler(lambda _loop, _context: None)
    coro = m.Trigger().wait(1)
    task = loop.create_task(coro)
    loop.run_until_complete(until(lambda: task._fut_waiter is not None))
    running, stop = threading.Event(), threading.Event()

    async def idle():
        running.set()
        await until_threads(stop.is_set, 30)

    thread = threading.Thread(target=lambda: loop.run_until_complete(idle()))
    thread.start()
    try:
        assert running.wait(30)
        kill(loop, at_once=False)  # running there: a successor, watched from that thread
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    during = coro.cr_state
    loop.close()
    after = coro.cr_state
    refs = [weakref.ref(loop), weakref.ref(task)]
    del loop, task, coro
    assert (during, after) == ("CORO_SUSPENDED", "CORO_CLOSED")
    assert collected(refs, 30)
    stats = m.pyo3_async_stats()
    assert stats["suspended_coroutines"] <= before["suspended_coroutines"], (before, stats)


def dropped_unclosed(name, killed):
    """A loop run once (a home made, maybe killed), then dropped without `close()`: whether a
    collection frees it."""
    loop = FACTORIES[name]()
    loop.set_exception_handler(lambda _loop, _context: None)

    async def main():
        assert await park_once(1) == 1
        if killed:
            kill(loop)
            assert await m.sleep(0.001, 2) == 2

    loop.run_until_complete(main())
    if isinstance(loop, RecNoReaderUvloop):
        loop.keeper = None
    ref = weakref.ref(loop)
    del loop
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        # Short: uvloop's loops are not collected either way, and wait it out every run.
        return collected([ref], seconds=2)


@pytest.mark.parametrize("name", LOOPS)
def test_a_loop_dropped_after_a_succession_is_collected_as_without_one(name):
    """asyncio loops are collected either way; uvloop's are not, with or without a succession
    (README: uvloop loops with a reader are never collected): the succession changes nothing."""
    before = m.pyo3_async_stats()["loops"]
    plain = dropped_unclosed(name, False)
    after_succession = dropped_unclosed(name, True)
    assert after_succession == plain
    if name in ASYNCIO_LOOPS:
        assert after_succession
        assert m.pyo3_async_stats()["loops"] <= before


# ---- held: anyio ----


@pytest.mark.parametrize("name", LOOPS)
def test_anyio_on_asyncio_across_the_death(name):
    def factory():
        loop = FACTORIES[name]()
        made.append(loop)
        return loop

    made = []

    async def main():
        loop = asyncio.get_running_loop()
        got = {}
        triggers = [m.Trigger() for _ in range(3)]
        async with anyio.create_task_group() as group:

            async def child(i):
                got[i] = await outcome(triggers[i].wait(i))

            for i in range(3):
                group.start_soon(child, i)
            await until(lambda: len(others()) >= 3 and all(t._fut_waiter for t in others()))
            kill(loop)
            triggers[0].fire()
            await anyio.to_thread.run_sync(triggers[1].fire)
            triggers[2].fire_from_thread()
        with anyio.move_on_after(0.05):
            await m.sleep(60, None)
        got["sleep"] = await outcome(m.sleep(0.001, "slept"))
        return got

    got = anyio.run(main, backend="asyncio", backend_options={"loop_factory": factory})
    if made and isinstance(made[0], RecNoReaderUvloop):
        made[0].keeper = None
    assert got == {0: ("value", 0), 1: ("value", 1), 2: ("value", 2), "sleep": ("value", "slept")}

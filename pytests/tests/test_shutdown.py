"""Work that reaches an asyncio loop while `asyncio.run` shuts it down (issue 12, item 8).

`asyncio.run`, `uvloop.run` and anyio's asyncio backend cancel the tasks that exist when the
main coroutine returns, close the loop's async generators, then close the loop. pyo3-async
cancels and awaits the tasks it started meanwhile, and refuses work that arrives once the
generators are closed: nothing dies pending ("Task was destroyed but it is pending!").
trio has no such phase: its system tasks are cancelled with the run (test_closed_loop.py).
"""

import asyncio
import gc
import sys

import anyio
import pytest
import uvloop

import pyo3_async_pytests as m

RUNNERS = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
    "anyio-asyncio": lambda main: anyio.run(lambda: main, backend="asyncio"),
}


@pytest.fixture(params=list(RUNNERS))
def run(request):
    """Runs a coroutine as the program's main, collecting what the loop reports."""
    reports = []

    def run(main):
        async def watched():
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda _, context: reports.append(context["message"]))
            return await main

        RUNNERS[request.param](watched())
        gc.collect()
        return reports

    return run


def test_work_started_while_tasks_are_cancelled_is_cancelled_and_awaited(run):
    """A task cancelled by the runner starts Rust-owned Python work in its cancellation
    handler: the runner does not know that task; pyo3-async cancels it and waits for it."""
    events = []

    async def work():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            events.append("work cancelled")
            await asyncio.sleep(0)  # its cleanup takes a step or two
            events.append("work cleaned up")
            raise

    async def victim(started):
        try:
            started.set()
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            m.spawn_detached(work)
            raise

    async def main():
        started = asyncio.Event()
        asyncio.ensure_future(victim(started))
        await started.wait()

    reports = run(main())
    assert m.detached_outcomes(1) == ["CancelledError"]
    assert events == ["work cancelled", "work cleaned up"]
    assert reports == []


def test_work_sent_after_shutdown_is_refused(run):
    """Once the loop has closed its async generators, work from Rust is refused with a clear
    error instead of starting a task that would die pending."""
    ran = []

    async def work():
        ran.append(True)

    async def main():
        await m.spawn_with_from_tokio(work)  # the loop's home exists and works
        await asyncio.get_running_loop().shutdown_asyncgens()
        with pytest.raises(RuntimeError, match="shutting down"):
            await m.spawn_with_from_tokio(work)
        with pytest.raises(RuntimeError, match="shutting down"):
            await m.spawn_from_tokio(work())

    assert run(main()) == []
    assert ran == [True]


def test_loop_closed_without_shutting_down_generators_is_quiet():
    """A loop closed by hand, without `shutdown_asyncgens()`, drops the shutdown watch
    without a report."""
    reports = []
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _, context: reports.append(context["message"]))

    async def work():
        return 7

    async def main():
        return await m.spawn_with_from_tokio(work)

    try:
        assert loop.run_until_complete(main()) == 7
    finally:
        loop.close()
    gc.collect()
    assert reports == []


def test_a_sentinel_that_cannot_start_costs_the_shutdown_notice_only(monkeypatch):
    # The home is first used under a `firstiter` hook that raises: it refuses the shutdown
    # sentinel. The queue is watched all the same (Rust's work runs), and the refusal is
    # reported, not swallowed. (Attack on issue 26.)
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    async def work():
        return 5

    def refuse(_generator):
        raise ResourceWarning("no generators here")

    async def main():
        firstiter, finalizer = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=refuse, finalizer=finalizer)
        try:
            return await asyncio.wait_for(m.spawn_with_from_tokio(work), 30)
        finally:
            sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(main()) == 5
    finally:
        loop.close()
    assert [type(report.exc_value) for report in reported] == [ResourceWarning]
    assert "shutdown" in reported[0].err_msg


def test_a_loop_first_used_after_its_generators_were_shut_down_refuses_work():
    # asyncio says its generators were shut down (`_asyncgens_shutdown_called`): a home made
    # then starts with the loop shutting down, as one made before would have learned from its
    # sentinel; no sentinel is started (it would be scheduled after shutdown_asyncgens()).
    import warnings

    async def work():
        return 5

    async def main():
        await asyncio.get_running_loop().shutdown_asyncgens()
        with pytest.raises(RuntimeError, match="shutting down"):
            await m.spawn_with_from_tokio(work)

    loop = asyncio.new_event_loop()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            loop.run_until_complete(main())
    finally:
        loop.close()


def test_a_loop_whose_shutdown_flag_fails_is_served(monkeypatch):
    # The flag read when a home is made (`_asyncgens_shutdown_called`) is the loop's own: a
    # loop whose attribute raises says nothing, and its Rust work runs. (The loop's own
    # `firstiter` hook reads it too, and so refuses the shutdown sentinel: reported once.)
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    class Odd(asyncio.SelectorEventLoop):
        @property
        def _asyncgens_shutdown_called(self):
            raise LookupError("no such flag here")

        @_asyncgens_shutdown_called.setter
        def _asyncgens_shutdown_called(self, _value):
            pass

    async def work():
        return 6

    async def main():
        return await asyncio.wait_for(m.spawn_with_from_tokio(work), 30)

    loop = Odd()
    try:
        assert loop.run_until_complete(main()) == 6
    finally:
        loop.close()
    assert [type(report.exc_value) for report in reported] == [LookupError]

"""Python glue of pyo3_async: event loops that Rust starts (`pyo3_async::run`, `LoopThread`).

A loop is always started by its framework's own entry point (`asyncio.run`, `uvloop.run`,
`trio.run`), so that it shuts down as a Python program's loop would: the tasks still running
are cancelled and awaited, async generators are closed, the loop is closed.
"""

import asyncio
import functools
import sys
import threading


async def _await(awaitable):
    return await awaitable


def run_loop(kind, awaitable, debug=None, loop_factory=None):
    """Runs `awaitable` as the main task of a new `kind` loop on this thread; its result.
    `debug` and `loop_factory` are asyncio's (`asyncio.run`'s, on every Python >= 3.10)."""
    if kind == "trio":
        import trio

        if debug is not None or loop_factory is not None:
            raise ValueError("`debug` and `loop_factory` are asyncio's: a trio run has neither")
        return trio.run(_await, awaitable)
    if kind == "uvloop":
        import uvloop

        _refuse_a_thread_uvloop_mistakes_for_the_main_one()
        if debug is None and loop_factory is None:
            return uvloop.run(_await(awaitable))
        loop_factory = loop_factory or uvloop.new_event_loop
    if debug is None and loop_factory is None:
        return asyncio.run(_await(awaitable))
    return _run_asyncio(awaitable, debug, loop_factory)


def _refuse_a_thread_uvloop_mistakes_for_the_main_one():
    """Raises where uvloop would take this thread for the main thread and CPython would not.

    uvloop sets up signal handling on the thread whose id is `threading.main_thread()`'s.
    Before 3.13, that is the thread that first imported `threading`, while CPython lets only
    the thread that initialised Python set up signals. In an embedding program the two differ
    when another thread imported `threading` first (this one, or one that ended and whose id
    the OS gave to this one): uvloop would fail in `set_wakeup_fd` after marking its loop
    running, and `uvloop.run` would end in "Cannot close a running event loop" with the loop
    left open. CPython is asked directly; where it cannot be asked, uvloop runs as before."""
    if sys.version_info >= (3, 13):
        return  # `threading.main_thread()` is the thread that initialised Python.
    if threading.main_thread().ident != threading.get_ident():
        return  # uvloop takes this thread for another one, and sets up no signals.
    if _is_cpythons_main_thread() is not False:
        return
    raise RuntimeError(
        "uvloop cannot run a loop on this thread: before Python 3.13, uvloop takes "
        "`threading.main_thread()` (the thread that first imported `threading`, or one that "
        "has its id) for the main thread and sets up signal handling there, which CPython "
        "allows only on the thread that initialised Python. Run the loop on another thread, "
        "or import `threading` on the thread that initialises Python, before any other does "
        "(`#[pyo3_async::test]` does)."
    )


def _is_cpythons_main_thread():
    """Whether CPython takes this thread for its main thread (`_PyOS_IsMainThread`, exported
    by 3.10 to 3.12, the Pythons that need it); None where that cannot be asked."""
    is_main_thread = _cpythons_main_thread_check()
    return None if is_main_thread is None else bool(is_main_thread())


@functools.cache
def _cpythons_main_thread_check():
    """`_PyOS_IsMainThread` through ctypes, looked up once; None without ctypes or the symbol."""
    try:
        import ctypes

        function = ctypes.pythonapi._PyOS_IsMainThread
    except (ImportError, AttributeError, OSError):
        return None
    function.argtypes = ()
    function.restype = ctypes.c_int
    return function


def _run_asyncio(awaitable, debug, loop_factory):
    """`asyncio.run(_await(awaitable), debug=debug, loop_factory=loop_factory)`, which 3.10
    lacks. The coroutine is made once the loop is: a factory that fails leaves none behind
    ("never awaited")."""
    if hasattr(asyncio, "Runner"):
        with asyncio.Runner(debug=debug, loop_factory=loop_factory) as runner:
            runner.get_loop()
            return runner.run(_await(awaitable))
    from asyncio.runners import _cancel_all_tasks

    loop = (loop_factory or asyncio.new_event_loop)()
    try:
        asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(_await(awaitable))
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def run_until_complete(loop, awaitable):
    """`loop.run_until_complete(awaitable)`, on an asyncio loop that exists but does not run;
    the loop stays open (it is the caller's)."""
    return loop.run_until_complete(_await(awaitable))


def runs_a_loop():
    """Whether this thread runs an event loop now (an asyncio loop, or a trio run)."""
    if asyncio._get_running_loop() is not None:
        return True
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


def run_loop_in_thread(kind, awaitable):
    """`run_loop` in a new Python thread, joined: each call gets a thread of its own."""
    outcome = {}

    def target():
        try:
            outcome["value"] = run_loop(kind, awaitable)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"pyo3-async-{kind}-run", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        error = outcome.pop("error")
        raise error
    return outcome["value"]


class LoopThread:
    """A `kind` loop running in a thread of its own until `stop()`.

    `handle` is the asyncio loop or the trio token. The thread is a daemon: a loop thread that
    is never stopped does not hold the interpreter's exit.
    """

    def __init__(self, kind, debug=None, loop_factory=None):
        self.kind = kind
        self._options = (debug, loop_factory)
        self.handle = None
        self.error = None
        self._stop = None
        self._ready = threading.Event()
        main = self._trio_main if kind == "trio" else self._asyncio_main
        self.thread = threading.Thread(
            target=self._run, args=(main,), name=f"pyo3-async-{kind}", daemon=True
        )
        self.thread.start()
        self._ready.wait()
        if self.error is not None:
            self.thread.join()
            raise self.error

    def _run(self, main):
        try:
            run_loop(self.kind, main(), *self._options)
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()

    async def _asyncio_main(self):
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        self.handle = loop
        self._stop = lambda: loop.call_soon_threadsafe(stopping.set)
        self._ready.set()
        await stopping.wait()

    async def _trio_main(self):
        import trio

        token = trio.lowlevel.current_trio_token()
        stopping = trio.Event()
        self.handle = token
        self._stop = lambda: token.run_sync_soon(stopping.set)
        self._ready.set()
        await stopping.wait()

    def on_own_thread(self):
        return threading.current_thread() is self.thread

    def request_stop(self):
        """Asks the loop's main task to end, from any thread (its own too); returns at once.
        The framework then cancels what still runs and closes the loop, and the thread ends."""
        if self.thread.is_alive():
            try:
                self._stop()
            except BaseException:  # the loop ended already (closed, run finished)
                pass

    def stop(self):
        """Ends the loop's main task (the framework then cancels what still runs, and closes
        the loop) and joins the thread; raises what the loop ended with, if anything. From
        the loop's own thread it cannot wait for itself: it asks the loop to end, then raises
        `RuntimeError` to say it did not wait."""
        self.request_stop()
        if self.on_own_thread():
            raise RuntimeError(
                "a LoopThread cannot wait for its own loop to stop (it would wait for itself): "
                "the loop was asked to stop and ends once the running work yields"
            )
        if self.thread.is_alive():
            self.thread.join()
        error, self.error = self.error, None
        if error is not None:
            raise error


loop_thread = LoopThread  # the accessor's name (glue::loop_thread)

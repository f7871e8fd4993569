"""Python glue of pyo3_async: what must be written in Python (`async def` task bodies).

Every function here that runs as a loop callback reports failures to its `completion` (or its
home) instead of raising: an exception there would be lost (asyncio) or crash the run (trio).

asyncio and trio are imported where they are used, never here: a trio program does not load
asyncio (a package of some 30 modules and 2 MB) because it uses pyo3_async, nor the reverse.
"""

import contextvars
import sys
import weakref


async def await_awaitable(awaitable):
    return await awaitable


def close_unstarted(awaitable):
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


if sys.version_info >= (3, 11):

    def _create_task(loop, awaitable, context):
        return loop.create_task(awaitable, context=context)

else:

    def _create_task(loop, awaitable, context):
        # 3.10's tasks take a copy of the current context: make `context` current first.
        return context.run(loop.create_task, awaitable)


def start_asyncio_task(shutdown, loop, awaitable, context, completion):
    """On the loop thread: runs `awaitable` as a task reporting to `completion`, and returns
    the task (Rust's `Launch` keeps its canceller); `None` when refused: once the loop shuts
    down (`shutdown`: its `AsyncioShutdown`), or when asyncio refuses the task."""
    if shutdown.closing:
        close_unstarted(awaitable)
        completion.set_exception(RuntimeError(SHUTTING_DOWN))
        return None
    import asyncio

    try:
        if not asyncio.iscoroutine(awaitable):
            awaitable = await_awaitable(awaitable)
        task = _create_task(loop, awaitable, context)
    except BaseException as exc:
        close_unstarted(awaitable)
        completion.set_exception(exc)
        return None
    task.add_done_callback(completion)
    shutdown.tasks.add(task)  # `completion` takes it out when it is done
    return task


def finished_futures(loop):
    """A resolved and a cancelled `_asyncio.Future` of `loop`: what a C task's wake-up reads in
    place of a WakeupFuture of that loop that finished the same way (`finished_future.rs`);
    `None` where asyncio has no C futures (the wake-up then reads the WakeupFuture)."""
    try:
        from _asyncio import Future
    except ImportError:
        return None
    resolved = Future(loop=loop)
    resolved.set_result(None)
    cancelled = Future(loop=loop)
    cancelled.cancel()
    return resolved, cancelled


def is_task_wakeup(callback):
    """Whether `callback` is the wake-up that a C asyncio task adds to the future it waits on
    (asked once per process: the answer is kept as the callback's C function)."""
    try:
        import _asyncio
    except ImportError:
        return False
    return getattr(callback, "__name__", None) == "task_wakeup" and isinstance(
        getattr(callback, "__self__", None), _asyncio.Task
    )


SHUTTING_DOWN = (
    "the event loop is shutting down (asyncio.run is finishing): no new Python work starts on it"
)


class AsyncioShutdown:
    """One per asyncio loop: the tasks pyo3-async started on it, and whether it shuts down.

    `asyncio.run` (and `uvloop.run`, `asyncio.Runner`) cancel the tasks that exist when the
    main coroutine returns, then close the loop's async generators, then close the loop. Work
    that Rust threads send meanwhile would start tasks that nobody cancels, which die pending
    with the loop ("Task was destroyed but it is pending!"). A sentinel async generator,
    registered with the loop like any other, tells us when the generators are closed: from
    then on new tasks are refused (their `PyFuture` fails with a clear error), and the tasks
    still running are cancelled and awaited, as `asyncio.run` does for its own.
    """

    __slots__ = ("closing", "tasks", "sentinel", "__weakref__")

    def __init__(self, loop):
        # A record made after the loop's generators were closed (its home's predecessor, and
        # the record with it, is gone) starts closing, where the loop says so: asyncio's
        # loops do (uvloop's do not).
        try:
            self.closing = getattr(loop, "_asyncgens_shutdown_called", False) is True
        except Exception:  # a loop's own attribute that fails: it says nothing
            self.closing = False
        self.tasks = set()
        self.sentinel = None

    def watch(self):
        """On the loop thread, inside the loop's run (its async generator hooks installed):
        starts the sentinel, which lives as long as this record (the loop's home). A loop
        closed without `shutdown_asyncgens()` just drops the record, which closes the
        sentinel on its way out; the sentinel holds the record weakly."""
        if self.sentinel is not None or self.closing:
            return

        def record_died(_):
            # Closed here rather than by the loop's finalizer hook, which would schedule its
            # `aclose()` on a loop that may never run again (and warn it was never awaited).
            try:
                sentinel.aclose().send(None)
            except (StopIteration, RuntimeError):
                pass

        sentinel = _shutdown_sentinel(weakref.ref(self, record_died))
        self.sentinel = sentinel
        # First iterated under the loop's `firstiter` hook (which is how `shutdown_asyncgens`
        # finds it) but not its `finalizer`: collected with a loop nobody closes, it closes at
        # once (`_close_now`) instead of scheduling `aclose()` on that dead loop. Which of the
        # weakref callback and the finalizer the collector runs first is its business (3.15
        # runs the finalizer first).
        firstiter, finalizer = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=_close_now)
        try:
            sentinel.asend(None).send(None)
        except StopIteration:
            pass
        finally:
            sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)


    async def close(self):
        self.closing = True
        tasks = [task for task in self.tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            import asyncio

            await asyncio.wait(tasks)


asyncio_shutdown = AsyncioShutdown  # the accessor's name (glue::asyncio_shutdown)


class _Unraisable:
    """What `sys.unraisablehook` takes (its own type cannot be built from Python)."""

    def __init__(self, exc, message):
        self.exc_type = type(exc)
        self.exc_value = exc
        self.exc_traceback = exc.__traceback__
        self.err_msg = message
        self.object = None


def _close_now(async_generator):
    """Closes an async generator whose `finally` never suspends, without a loop."""
    try:
        async_generator.aclose().send(None)
    except (StopIteration, RuntimeError):
        pass


async def _shutdown_sentinel(shutdown):
    try:
        yield
    finally:
        shutdown = shutdown()
        if shutdown is not None:
            await shutdown.close()


async def _run_trio_task(awaitable, completion, scope):
    if scope.cancel_called:  # Rust dropped the future before it started: nobody listens
        close_unstarted(awaitable)
        completion.cancelled_before_start()
        return
    with scope:
        try:
            result = await awaitable
        except BaseException as exc:  # a system task must never raise
            completion.set_exception(exc)
        else:
            completion.set_result(result)
            return
    if scope.cancelled_caught:
        completion.cancelled_before_start()


def start_trio_task(awaitable, context, completion, scope):
    """On the trio thread: runs `awaitable` as a system task reporting to `completion`."""
    import trio

    try:
        trio.lowlevel.spawn_system_task(
            _run_trio_task, awaitable, completion, scope, context=context
        )
    except BaseException as exc:
        close_unstarted(awaitable)
        completion.set_exception(exc)


# How far off the keeper's timer is due: some 34 years.
_KEEPER_DELAY = 2.0**30


def call_in_a_frame(function, *args):
    """`function(*args)`, called from a Python frame: how a thread that runs no Python code
    (the forwarder, a Rust thread) calls a loop's thread-safe entry point. uvloop 0.23 on 3.15,
    in debug mode, fails `call_soon_threadsafe` on such a thread (the source traceback it
    records reads a frame that the thread does not have), and a loop that refuses a call from
    another thread reads as closed."""
    return function(*args)


def watch_asyncio(loop, fd, drain, shutdown):
    """On the loop thread: the loop drains the home's queue when its socket is readable, and
    `shutdown` learns when the loop shuts down. A sentinel that cannot start (a user's
    `firstiter` hook that raises, a `ResourceWarning` made an error after `shutdown_asyncgens`)
    costs that notice only, reported as unraisable: the queue is watched all the same."""
    try:
        shutdown.watch()
    except Exception as exc:
        sys.unraisablehook(_Unraisable(exc, "pyo3_async: watching the loop's shutdown"))
    try:
        # In an empty context: the reader's handle keeps a copy of the context it was made in
        # for the loop's lifetime, and this runs inside whichever task first suspended a Rust
        # coroutine on the loop (or a thread's `call_soon_threadsafe`).
        contextvars.Context().run(loop.add_reader, fd, drain)
    except BaseException:  # no `add_reader` (Proactor, custom loops), or closed meanwhile
        drain.unwatchable()
        keep_asyncio(loop, drain.keeper())


def keep_asyncio(loop, keeper):
    """Has the loop keep `keeper`, a drain of a home the loop does not watch: a timer that
    does not fire, which `close()` drops (the home dies then). Finite: a loop that
    fast-forwards its clock to its next timer when idle (virtual clocks) would jump to
    infinity; one that fires it disarms it."""
    try:
        contextvars.Context().run(loop.call_later, _KEEPER_DELAY, keeper)
        keeper.arm()
    except Exception:  # closed meanwhile, or no timers: the next forwarded job finds out
        pass


async def _watch_trio(fd, drain):
    import trio

    try:
        while True:
            await trio.lowlevel.wait_readable(fd)
            drain()
    finally:
        # The run cancels its system tasks when its main task is done, before the last tasks
        # finish: those still get their wake-ups, through the token from now on.
        drain.unwatchable()


class _RunEnd:
    """A trio instrument: the run's end is its home's death (nothing of it runs any more)."""

    __slots__ = ("drain",)

    def __init__(self, drain):
        self.drain = drain

    def after_run(self):
        self.drain.died()


def watch_trio(fd, drain):
    """On the trio thread: a system task drains the home's queue when its socket is readable;
    an instrument reports the run's end."""
    import trio

    try:
        trio.lowlevel.add_instrument(_RunEnd(drain))
        trio.lowlevel.spawn_system_task(_watch_trio, fd, drain)
    except BaseException:
        drain.unwatchable()

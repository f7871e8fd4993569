"""Python glue of pyo3_async: starts awaitables for Rust on asyncio and trio.

Kept in Python because trio system tasks and asyncio tasks need `async def` wrappers.
Every function here reports failures to its `completion` instead of raising: they run as
loop callbacks, where an exception would be lost (asyncio) or crash the run (trio).
"""

import asyncio


async def await_awaitable(awaitable):
    return await awaitable


class Resume:
    """An await already under way (its `__await__` iterator yielded `first`), as an awaitable
    that picks it up from there: `yield from` on an iterator that already started."""

    __slots__ = ("iterator", "first")

    def __init__(self, iterator, first):
        self.iterator = iterator
        self.first = first

    def __await__(self):
        iterator, yielded = self.iterator, self.first
        self.iterator = self.first = None
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
                raise
            except BaseException as exc:
                throw = getattr(iterator, "throw", None)
                if throw is None:
                    raise
                try:
                    yielded = throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = iterator.send(sent)
                except StopIteration as stop:
                    return stop.value


def close_unstarted(awaitable):
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


def start_asyncio_task(loop, awaitable, context, completion, slot):
    """On the loop thread: runs `awaitable` as a task reporting to `completion`."""
    if slot.cancel_requested:
        close_unstarted(awaitable)
        return
    try:
        if not asyncio.iscoroutine(awaitable):
            awaitable = await_awaitable(awaitable)
        task = loop.create_task(awaitable, context=context)
    except BaseException as exc:
        close_unstarted(awaitable)
        completion.set_exception(exc)
        return
    task.add_done_callback(completion)
    slot.attach_asyncio(loop, task)


def attach_asyncio_future(loop, future, completion, slot):
    """On the loop thread: reports `future` (created elsewhere) to `completion`."""
    future.add_done_callback(completion)
    slot.attach_asyncio(loop, future)


async def run_trio_system_task(awaitable, completion, scope):
    if scope.cancel_called:  # Rust dropped the future before it started: nobody listens
        close_unstarted(awaitable)
        return
    with scope:
        try:
            result = await awaitable
        except BaseException as exc:  # a system task must never raise
            completion.set_exception(exc)
        else:
            completion.set_result(result)


def spawn_trio_system_task(awaitable, completion, scope, context):
    """On the trio thread: runs `awaitable` as a system task reporting to `completion`."""
    import trio

    try:
        trio.lowlevel.spawn_system_task(
            run_trio_system_task, awaitable, completion, scope, context=context
        )
    except BaseException as exc:
        close_unstarted(awaitable)
        completion.set_exception(exc)


async def drain_trio_wakeups(fd, drain):
    """A system task of each trio run: delivers the wake-ups queued by other threads."""
    import trio

    try:
        while True:
            await trio.lowlevel.wait_readable(fd)
            drain()
    finally:
        # The run cancels its system tasks when its main task is done, before the last tasks
        # finish: those still get their wake-ups, through the token from now on.
        drain.close()


def _reraise(exception):
    raise exception


def add_frame(exception, name, qualname, filename, line):
    """Adds a traceback entry named after a Rust function to `exception` (the same object)."""
    code = _reraise.__code__.replace(
        co_name=name, co_qualname=qualname, co_filename=filename, co_firstlineno=line
    )
    frame = type(_reraise)(code, {})
    try:
        frame(exception)
    except BaseException:
        pass
    return exception

"""Python frames that stand for Rust functions, so that Python's tools can name them.

A Rust coroutine runs no bytecode, so it has no frame of its own. For tracebacks (an exception
leaving the Rust function) and for what debuggers and asyncio read of a suspended coroutine
(`cr_frame`, `cr_code`), these helpers make real frames whose code object carries the Rust
function's name, qualified name, file and line. The code objects are made once per function.
"""

import sys


# On one line, so that the `raise` is on `co_firstlineno`: the line a Rust function's entry
# shows is then the line its label names.
def _reraise(exception): raise exception  # noqa: E704


class _Suspended:
    """An awaitable that suspends once, for ever: where a frame owner waits."""

    __slots__ = ()

    def __await__(self):
        yield


_SUSPENDED = _Suspended()


# A coroutine on one line, so that its frame, suspended in the `await`, reports
# `co_firstlineno` as its line; a coroutine (not a generator), so that 3.14's call graphs call
# the frame `async`.
async def _owner_template(): await _SUSPENDED  # noqa: E704


def _renamed(code, name, qualname, filename, line):
    fields = dict(co_name=name, co_filename=filename, co_firstlineno=line)
    if sys.version_info >= (3, 11):
        fields["co_qualname"] = qualname
    return code.replace(**fields)


def add_frame(exception, name, qualname, filename, line):
    """Adds a traceback entry named after a Rust function to `exception` (the same object)."""
    code = _renamed(_reraise.__code__, name, qualname, filename, line)
    frame = type(_reraise)(code, {})
    try:
        frame(exception)
    except BaseException:
        pass
    return exception


_owners = {}


def _owner_function(name, qualname, filename, line):
    key = (qualname, filename, line)
    function = _owners.get(key)
    if function is None:
        code = _renamed(_owner_template.__code__, name, qualname, filename, line)
        function = _owners[key] = type(_owner_template)(
            code, {"__name__": "<rust>", "_SUSPENDED": _SUSPENDED}
        )
    return function


def frame_owner(name, qualname, filename, line):
    """A coroutine suspended for ever, whose frame (`cr_frame`) stands for a suspended Rust
    function: `cr_frame` of a Rust coroutine. Started, so that dropping it is no "never
    awaited" (closing it runs nothing)."""
    owner = _owner_function(name, qualname, filename, line)()
    owner.send(None)
    return owner


def frame_code(name, qualname, filename, line):
    """The code object of `frame_owner`'s frames: `cr_code` of a Rust coroutine."""
    return _owner_function(name, qualname, filename, line).__code__

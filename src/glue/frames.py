"""Python frames that stand for Rust functions, so that Python's tools can name them.

A Rust coroutine runs no bytecode, so it has no frame of its own. For tracebacks (an exception
leaving the Rust function) and for what debuggers and asyncio read of a suspended coroutine
(`cr_frame`, `cr_code`), these helpers make real frames whose code object carries the Rust
function's name, qualified name, file and line. The code objects are made once per function.
"""

import sys


def _reraise(exception):
    raise exception


# A generator that never runs: its frame, suspended before its first instruction, reports
# `co_firstlineno` as its line on every Python version.
_owner_template = lambda: (yield)  # noqa: E731


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
        function = _owners[key] = type(_owner_template)(code, {"__name__": "<rust>"})
    return function


def frame_owner(name, qualname, filename, line):
    """A generator that never runs, whose frame (`gi_frame`) stands for a suspended Rust
    function: `cr_frame` of a Rust coroutine."""
    return _owner_function(name, qualname, filename, line)()


def frame_code(name, qualname, filename, line):
    """The code object of `frame_owner`'s frames: `cr_code` of a Rust coroutine."""
    return _owner_function(name, qualname, filename, line).__code__

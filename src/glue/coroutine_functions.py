"""Exported Rust async functions that `inspect.iscoroutinefunction` recognizes.

A Rust function exported by PyO3 is a builtin: it returns a coroutine, but it has no code
object with `CO_COROUTINE` and takes no attributes, so nothing can mark it. Python 3.12 added
`inspect.markcoroutinefunction` for such callables; the mark goes on a thin Python wrapper.
"""

import functools
import inspect


def mark_coroutine_functions(owner, names):
    """Replaces each named function of a module (or method of a class) with a marked wrapper.

    Before 3.12, which has no mark to set, the names are checked and nothing changes."""
    mark = getattr(inspect, "markcoroutinefunction", None)
    for name in names:
        # A class's own attribute, unbound: the wrapper, a function, binds like a method.
        found = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
        if found is None:
            raise AttributeError(f"{owner!r} has no function {name!r} to mark")
        if not callable(found):
            raise TypeError(f"{name!r} of {owner!r} is {found!r}, not a function")
        if mark is None or inspect.iscoroutinefunction(found):
            continue
        setattr(owner, name, mark(_forwarding(found)))


def _forwarding(function):
    """A Python function calling `function`, with its name, docstring and signature."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        return function(*args, **kwargs)

    return call

"""Exported Rust async functions that `inspect.iscoroutinefunction` recognizes.

A Rust function exported by PyO3 is a builtin: it returns a coroutine, but it has no code
object with `CO_COROUTINE` and takes no attributes, so nothing can mark it. Python 3.12 added
`inspect.markcoroutinefunction` for such callables; the mark goes on a thin Python wrapper.

A class's attribute must bind as it did: an instance method (`method_descriptor`) is wrapped by
a plain function, which binds `self` the same way; a static method (`staticmethod`) and a class
method (`classmethod`, or PyO3's `classmethod_descriptor`) are wrapped again in a descriptor of
the same kind, around a marked function; a builtin function stored as a class attribute, which
binds nothing, becomes a static method.
"""

import functools
import inspect
import types


def mark_coroutine_functions(owner, names):
    """Replaces each named function of a module (or method of a class) with a marked wrapper.

    Before 3.12, which has no mark to set, the names are checked and nothing changes."""
    mark = getattr(inspect, "markcoroutinefunction", None)
    for name in names:
        # A class's own attribute, unbound: the descriptor, which decides how it binds.
        found = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
        if found is None:
            raise AttributeError(f"{owner!r} has no function {name!r} to mark")
        if not (callable(found) or isinstance(found, (staticmethod, classmethod))):
            raise TypeError(f"{name!r} of {owner!r} is {found!r}, not a function")
        marked = _marked(owner, found, mark) if mark is not None else None
        if marked is not None:
            setattr(owner, name, marked)


def _marked(owner, found, mark):
    """What replaces `found`: a marked wrapper binding as `found` binds, or `None` when
    `found` is marked already."""
    if isinstance(owner, type) and isinstance(found, types.BuiltinFunctionType):
        # A builtin function stored in a class does not bind (it is no descriptor); a Python
        # function would: the wrapper is a static method.
        return staticmethod(mark(_forwarding(found)))
    if isinstance(found, staticmethod):
        function = found.__func__
        return None if inspect.iscoroutinefunction(function) else staticmethod(mark(_forwarding(function)))
    if isinstance(found, classmethod):
        function = found.__func__
        return None if inspect.iscoroutinefunction(function) else classmethod(mark(_forwarding(function)))
    if isinstance(found, types.ClassMethodDescriptorType):
        # A builtin class method: bound to the class it is called on, then called.
        @functools.wraps(found)
        def call(cls, *args, **kwargs):
            return found.__get__(None, cls)(*args, **kwargs)

        return classmethod(mark(call))
    if inspect.iscoroutinefunction(found):
        return None
    return mark(_forwarding(found))


def _forwarding(function):
    """A Python function calling `function`, with its name, docstring and signature."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        return function(*args, **kwargs)

    return call

"""Exported Rust async functions that `inspect.iscoroutinefunction` recognizes.

A Rust function exported by PyO3 is a builtin: it returns a coroutine, but it has no code
object with `CO_COROUTINE` and takes no attributes, so nothing can mark it. Python 3.12 added
`inspect.markcoroutinefunction` for such callables; the mark goes on a thin Python wrapper that
returns the Rust coroutine. Before 3.12 only a function whose code is a coroutine's passes, so
the wrapper is an `async def` that awaits the Rust coroutine (a native coroutine per call).

Either wrapper declares the function's own parameters and passes them on by name or position,
so that a wrong call fails when it is made, and a call costs one plain Python call more: a
`*args, **kwargs` wrapper packs a tuple and a dict per call, three times the cost. Parameters
Python cannot declare or read (no text signature, a Rust `r#in`, a default the signature shows
as `...`, which the wrapper could not pass on) leave `*args, **kwargs`.

A class's attribute must bind as it did: an instance method (`method_descriptor`) is wrapped by
a plain function, which binds `self` the same way; a static method (`staticmethod`) and a class
method (`classmethod`, or PyO3's `classmethod_descriptor`) are wrapped again in a descriptor of
the same kind, around a marked function; a builtin function stored as a class attribute, which
binds nothing, becomes a static method.
"""

import functools
import inspect
import types

_mark = getattr(inspect, "markcoroutinefunction", None)


def mark_coroutine_functions(owner, names):
    """Replaces each named function of a module (or method of a class) with a marked wrapper."""
    for name in names:
        # A class's own attribute, unbound: the descriptor, which decides how it binds.
        found = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
        if found is None:
            raise AttributeError(f"{owner!r} has no function {name!r} to mark")
        if not (callable(found) or isinstance(found, (staticmethod, classmethod))):
            raise TypeError(f"{name!r} of {owner!r} is {found!r}, not a function")
        marked = _marked(owner, found)
        if marked is not None:
            setattr(owner, name, marked)


def _marked(owner, found):
    """What replaces `found`: a marked wrapper binding as `found` binds, or `None` when
    `found` is marked already."""
    if isinstance(owner, type) and isinstance(found, types.BuiltinFunctionType):
        # A builtin function stored in a class does not bind (it is no descriptor); a Python
        # function would: the wrapper is a static method.
        return staticmethod(_coroutine_function(found))
    if isinstance(found, staticmethod):
        function = found.__func__
        return None if inspect.iscoroutinefunction(function) else staticmethod(_coroutine_function(function))
    if isinstance(found, classmethod):
        function = found.__func__
        return None if inspect.iscoroutinefunction(function) else classmethod(_coroutine_function(function))
    if isinstance(found, types.ClassMethodDescriptorType):
        # A builtin class method: bound to the class it is called on, then called.
        def bound(cls, *args, **kwargs):
            return found.__get__(None, cls)(*args, **kwargs)

        # Its parameters are those of the method bound to a class, after `cls`.
        parameters_of = found.__get__(None, owner) if isinstance(owner, type) else None
        return classmethod(_coroutine_function(functools.wraps(found)(bound), parameters_of))
    if inspect.iscoroutinefunction(found):
        return None
    return _coroutine_function(found)


def _coroutine_function(function, parameters_of=None):
    """A Python function calling `function`, with its name, docstring and signature, that
    `inspect.iscoroutinefunction` recognizes. `parameters_of`: a callable whose parameters
    `function` takes after a first one (a class method's `cls`)."""
    wrapper = functools.wraps(function)(_forwarding(function, parameters_of))
    return wrapper if _mark is None else _mark(wrapper)


def _forwarding(function, parameters_of):
    """A function with `function`'s own parameters that calls it (3.12+) or awaits it (before),
    or with `*args, **kwargs` where those parameters cannot be declared and passed on."""
    try:
        parameters = list(
            inspect.signature(
                function if parameters_of is None else parameters_of, follow_wrapped=False
            ).parameters.values()
        )
    except (TypeError, ValueError):
        parameters = None
    if parameters is not None and any(parameter.default is ... for parameter in parameters):
        # PyO3 shows a default it cannot write as Python (`-1`, `Some(..)`, a constant) as
        # `...`: passed on, it would replace the function's real default.
        parameters = None
    try:
        return _declared(function, parameters_of is not None, parameters)
    except SyntaxError:
        return _declared(function, parameters_of is not None, None)


def _declared(function, takes_class, parameters):
    """The wrapper for `parameters` (`None`: any), after a first `cls` if `takes_class`: a
    marked `def` returning `function`'s coroutine, or before 3.12 an `async def` awaiting it."""
    P = inspect.Parameter
    names = {parameter.name for parameter in parameters or ()}

    def unused(name):
        # The body's own names must not be shadowed by a parameter (a Rust `_function`).
        while name in names:
            name = "_" + name
        return name

    callee = unused("_function")
    leading = [unused("cls")] if takes_class else []
    namespace = {callee: function}
    if parameters is None:
        declared, passed = leading + ["*args", "**kwargs"], leading + ["*args", "**kwargs"]
    else:
        declared, passed = list(leading), list(leading)
        kinds = [parameter.kind for parameter in parameters]
        for index, parameter in enumerate(parameters):
            name = parameter.name
            if parameter.kind is P.KEYWORD_ONLY and P.VAR_POSITIONAL not in kinds and "*" not in declared:
                declared.append("*")
            text = {P.VAR_POSITIONAL: f"*{name}", P.VAR_KEYWORD: f"**{name}"}.get(parameter.kind, name)
            declared.append(text)
            if parameter.default is not P.empty:
                # Evaluated where the function is defined, in `namespace`: no parameter can
                # shadow it.
                namespace[f"_default{index}"] = parameter.default
                declared[-1] += f"=_default{index}"
            if parameter.kind is P.POSITIONAL_ONLY and (
                index + 1 == len(kinds) or kinds[index + 1] is not P.POSITIONAL_ONLY
            ):
                declared.append("/")
            passed.append(f"{name}={name}" if parameter.kind is P.KEYWORD_ONLY else text)
    header, call = ("def", "") if _mark is not None else ("async def", "await ")
    source = f"{header} forwarding({', '.join(declared)}):\n    return {call}{callee}({', '.join(passed)})\n"
    exec(source, namespace)
    return namespace["forwarding"]

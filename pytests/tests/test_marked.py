"""`pyo3_async::mark_coroutine_functions`: exported async functions and methods that
`inspect.iscoroutinefunction` recognizes (and frameworks with it), on every Python: a marked
wrapper on 3.12+, an `async def` with the function's own parameters before."""

import inspect
import sys

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

import pyo3_async_pytests as m

#: Python 3.12 added the mark; before it, the wrapper is an `async def`.
MARKABLE = sys.version_info >= (3, 12)


def test_marked_functions_and_methods_are_coroutine_functions():
    assert inspect.iscoroutinefunction(m.marked_add) is True
    assert inspect.iscoroutinefunction(m.endpoint) is True
    assert inspect.iscoroutinefunction(m.Adder.add) is True
    assert inspect.iscoroutinefunction(m.Adder(1).add) is True


def test_unmarked_ones_are_not():
    assert not inspect.iscoroutinefunction(m.unmarked_add)
    assert not inspect.iscoroutinefunction(m.Adder(1).add_unmarked)


def test_a_marked_function_keeps_its_name_docstring_and_signature():
    assert inspect.signature(m.marked_add) == inspect.signature(m.unmarked_add)
    assert inspect.signature(m.Adder.add) == inspect.signature(m.Adder.add_unmarked)
    assert m.marked_add.__doc__ == m.unmarked_add.__doc__
    assert m.marked_add.__name__ == "marked_add"
    assert m.Adder.add.__qualname__ == "Adder.add"


def test_marking_again_changes_nothing():
    marked = m.marked_add
    m.mark(m, ["marked_add"])
    assert m.marked_add is marked


@pytest.mark.anyio
async def test_marked_functions_and_methods_still_return_awaitables():
    assert await m.marked_add(40) == 42
    assert await m.marked_add(1, b=1) == 2
    assert await m.Adder(40).add(2) == 42
    with pytest.raises(TypeError):
        m.marked_add()


def test_a_wrong_call_fails_when_made_as_a_native_coroutine_functions_does():
    with pytest.raises(TypeError):
        m.marked_add()
    with pytest.raises(TypeError):
        m.Adder.build()
    with pytest.raises(TypeError):
        m.Adder(1).add(1, 2, 3)


@pytest.mark.skipif(MARKABLE, reason="the async def wrapper is the one of 3.10 and 3.11")
def test_before_3_12_the_wrapper_is_a_native_coroutine_function():
    assert inspect.iscoroutine(coroutine := m.marked_add(1))
    coroutine.close()


@pytest.mark.anyio
async def test_parameters_named_as_the_wrappers_own_names_are_passed_on():
    class Owner:
        @staticmethod
        def call(_function, cls=2, *, _default0=3):
            return m.echo((_function, cls, _default0))

    m.mark(Owner, ["call"])
    assert await Owner.call(1) == (1, 2, 3)
    assert await Owner.call(4, cls=5, _default0=6) == (4, 5, 6)


def test_missing_or_non_callable_names_are_refused():
    with pytest.raises(AttributeError, match="no function 'missing'"):
        m.mark(m, ["missing"])
    with pytest.raises(TypeError, match="not a function"):
        m.mark(m, ["__name__"])
    with pytest.raises(AttributeError, match="no function 'missing'"):
        m.mark(m.Adder, ["missing"])


@pytest.mark.anyio
async def test_starlette_awaits_a_marked_rust_endpoint():
    # Starlette calls an endpoint it does not take for a coroutine function in a worker thread,
    # and would get a coroutine object back instead of a response.
    app = Starlette(routes=[Route("/hello", m.endpoint)])
    transport = httpx.ASGITransport(app=app)
    with anyio.fail_after(10):
        async with httpx.AsyncClient(transport=transport, base_url="http://rust") as client:
            response = await client.get("/hello")
    assert response.status_code == 200
    assert response.text == "hello from Rust at /hello"


@pytest.mark.anyio
async def test_marked_static_and_class_methods_bind_as_before():
    # The descriptors are kept: a static method takes no instance, a class method gets the
    # class it is called on, through the class and through an instance alike.
    assert await m.Adder.version() == "1.0"
    assert await m.Adder(1).version() == "1.0"
    built = await m.Adder.build(40)
    assert type(built) is m.Adder and await built.add(2) == 42
    built = await m.Adder(1).build(5)
    assert await built.add(1) == 6
    assert inspect.iscoroutinefunction(m.Adder.version) is True
    assert inspect.iscoroutinefunction(m.Adder(1).version) is True
    assert inspect.iscoroutinefunction(m.Adder.build) is True
    assert inspect.iscoroutinefunction(m.Adder(1).build) is True
    assert isinstance(m.Adder.__dict__["version"], staticmethod)
    assert isinstance(m.Adder.__dict__["build"], classmethod)
    assert inspect.signature(m.Adder.version) == inspect.signature(lambda: None)
    assert m.Adder.version.__name__ == "version"


def test_marking_static_and_class_methods_again_changes_nothing():
    version, build = m.Adder.__dict__["version"], m.Adder.__dict__["build"]
    m.mark(m.Adder, ["version", "build"])
    assert m.Adder.__dict__["version"] is version
    assert m.Adder.__dict__["build"] is build


@pytest.mark.anyio
async def test_marking_keeps_how_each_kind_of_class_attribute_binds():
    class Owner:
        static = staticmethod(m.unmarked_add)
        builtin = m.unmarked_add  # a builtin function binds nothing

        @classmethod
        def klass(cls, a):
            return m.unmarked_add(a, 1)

    m.mark(Owner, ["static", "builtin", "klass"])
    for owner in (Owner, Owner()):
        assert await owner.static(1) == 3
        assert await owner.builtin(1) == 3
        assert await owner.klass(1) == 2
        assert inspect.iscoroutinefunction(owner.static) is True
        assert inspect.iscoroutinefunction(owner.builtin) is True
        assert inspect.iscoroutinefunction(owner.klass) is True


@pytest.mark.anyio
async def test_a_default_the_signature_cannot_show_stays_the_functions_own():
    # PyO3 shows `b = -1` as `b=...`; a wrapper passing that on would call `marked_offset(1, ...)`.
    assert inspect.signature(m.marked_offset).parameters["b"].default is ...
    assert await m.marked_offset(1) == 0
    assert await m.marked_offset(1, 2) == 3
    assert await m.marked_offset(1, b=5) == 6
    # Its wrapper takes `*args, **kwargs`: before 3.12 a wrong call fails when awaited.
    with pytest.raises(TypeError):
        await m.marked_offset()


@pytest.mark.skipif(not MARKABLE, reason="3.12+ wrappers return the Rust coroutine")
def test_the_marked_wrapper_returns_the_rust_coroutine_and_declares_the_parameters():
    coroutine = m.marked_add(1)
    assert type(coroutine).__name__ == "Coroutine"
    coroutine.close()
    # The wrapper's own code takes the function's parameters: no `*args, **kwargs` packing.
    code = m.marked_add.__code__
    assert code.co_varnames[: code.co_argcount] == ("a", "b")
    assert not code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS)

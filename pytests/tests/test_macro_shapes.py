"""The attribute macros in the shapes real bindings use (src/macro_shapes.rs): attributes that
belong to the body reach it, results are told by type not by name, PyO3 under another path,
no implicit prelude, declarative modules, owned `self`. On every loop."""

import inspect

import anyio
import pytest

import pyo3_async_pytests as m

pytestmark = pytest.mark.anyio


async def test_an_instrument_attribute_wraps_the_body_not_the_call():
    assert m.span_at_call() is None
    coroutine = m.traced(3)
    # Creating the coroutine entered no span; the body runs inside it, across a suspension.
    assert m.span_at_call() is None
    assert await coroutine == ("traced_body", "traced_body", 3)
    assert m.span_at_call() is None


async def test_an_instrument_attribute_on_a_method_skips_its_self():
    shapes = m.Shapes(40)
    assert await shapes.traced(2) == ("traced_method", 42)
    assert await shapes.traced_if() == "conditional"
    assert m.span_at_call() is None


async def test_an_instrument_attribute_names_the_span_after_the_function():
    assert await m.traced_plain(1) == "traced_plain"
    assert await m.Shapes(1).traced_plain_method(2) == ("traced_plain_method", 3)


async def test_names_the_expansion_uses_do_not_clash_with_the_users():
    assert type(await m.make_job()).__name__ == "Job"
    assert await m.forbidden_lints(3) == 3
    assert [item async for item in m.forbidden_lints_count(2)] == [0, 1]
    assert await m.eight(1, 1, 1, 1, 1, 1, 1, 1) == 8
    assert await m.Shapes(0).seven(1, 1, 1, 1, 1, 1, 1) == 7
    assert await m.ignores_its_argument(5) == 0


async def test_a_result_alias_converts_its_error():
    assert await m.lookup("one") == 1
    with pytest.raises(LookupError, match="two"):
        await m.lookup("two")


async def test_a_class_named_result_is_returned_as_a_value():
    made = await m.make_result(7)
    assert type(made).__name__ == "MacroResult"
    assert made.value == 7


async def test_a_generator_body_that_fails_raises_at_the_first_item():
    assert [item async for item in m.checked_count(3)] == [0, 1, 2]
    generator = m.checked_count(-1)
    with pytest.raises(ValueError, match="negative count"):
        await generator.__anext__()
    with pytest.raises(StopAsyncIteration):
        await generator.__anext__()


async def test_pyo3_under_another_path():
    assert await m.through_renamed(21) == 42
    assert await m.Renamed().twice(4) == 8


async def test_functions_and_methods_without_the_implicit_prelude():
    assert await m.bare_module_name() == await m.macro_module_name()
    assert [item async for item in m.bare_count(2)] == [0, 1]
    assert await m.Bare().ping() == 1
    with anyio.move_on_after(0) as scope:
        await m.bare_until_cancelled()
    assert scope.cancelled_caught


async def test_declarative_modules_take_async_functions():
    assert m.declarative.declared.__name__ == "declared"
    assert await m.declarative.declared(1) == 2
    assert await m.declarative.exported_elsewhere() == "elsewhere"


async def test_a_method_may_own_its_object():
    shapes = m.Shapes(1)
    coroutine = shapes.owned_self(2)
    assert coroutine.__qualname__ == "Shapes.owned_self"
    assert await coroutine == 3


def test_signatures_and_help_show_what_was_written():
    assert str(inspect.signature(m.lookup)) == "(key)"
    assert str(inspect.signature(m.Shapes.owned_self)) == "(self, /, extra)"
    assert str(inspect.signature(m.Shapes.traced)) == "(self, /, extra)"
    assert str(inspect.signature(m.through_renamed)) == "(value)"
    assert "owned by the coroutine" in (m.Shapes.owned_self.__doc__ or "")
    text = pydoc_text(m.Shapes)
    assert "traced_if" in text and "The attribute under a condition" in text


def pydoc_text(thing):
    import pydoc

    return pydoc.render_doc(thing, renderer=pydoc.plaintext)

"""The spare `StopIteration` (src/rust_to_py/stop_iteration.rs): from Python 3.12, `await`
takes a Rust coroutine's result out of a `StopIteration`, and one is kept and refilled while
nobody else holds it. Nobody may see it change, and it may not keep a result alive longer than
the coroutine that returned it.

`next()` by hand gets the same exception `await` does: these tests read it that way, and reach
the spare at rest through the collector, as any code could."""

import gc
import sys

import pytest

import pyo3_async_pytests as m


class Thing:
    """A result that says when it is freed."""

    freed = []

    def __init__(self, name):
        self.name = name

    def __del__(self):
        Thing.freed.append(self.name)


def caught(make):
    """The StopIteration that the coroutine `make()` returns raises from `next()` (tp_iternext,
    as `await`), the coroutine held by nobody else, as `await f()` holds it."""
    try:
        next(make().__await__())
    except StopIteration as stop:
        return stop
    raise AssertionError("no StopIteration")


def spares():
    """The StopIterations at rest that the collector knows (`StopIteration(None)`)."""
    return [
        o for o in gc.get_objects() if type(o) is StopIteration and o.args == (None,)
    ]


@pytest.fixture(autouse=True)
def fresh_thing_log():
    Thing.freed.clear()
    yield


@pytest.mark.anyio
async def test_a_result_is_the_callers_alone_once_awaited():
    result = await m.ready(Thing("a"))
    assert result.name == "a"
    del result
    assert Thing.freed == ["a"]


@pytest.mark.anyio
async def test_each_item_of_a_stream_is_freed_when_the_loop_drops_it():
    names = iter("abc")
    seen = []

    def callback():
        name = next(names, None)
        return None if name is None else Thing(name)

    async for item in m.calls_back(callback):
        seen.append((item.name, list(Thing.freed)))
    # Each item was freed as soon as the loop variable moved on to the next one.
    assert seen == [("a", []), ("b", ["a"]), ("c", ["a", "b"])]
    del item
    assert Thing.freed == ["a", "b", "c"]


@pytest.mark.anyio
async def test_a_kept_coroutine_does_not_keep_its_result():
    coroutine = m.ready(Thing("a"))
    result = await coroutine
    del result
    assert Thing.freed == ["a"]
    del coroutine


def test_a_stop_iteration_raised_by_hand_is_freed_with_its_traceback():
    """`next()` by hand on a coroutine nobody else holds: the spare's exception goes on into
    Python code, and only the code that caught it keeps it."""
    for name in "abc":
        stop = caught(lambda: m.ready(Thing(name)))
        assert stop.value.name == name
        del stop
        assert Thing.freed[-1] == name
    assert Thing.freed == ["a", "b", "c"]


@pytest.mark.anyio
async def test_an_exception_someone_holds_never_changes():
    first = caught(lambda: m.ready(1))
    for value in range(2, 20):
        assert await m.ready(value) == value
        assert caught(lambda: m.ready(value)).args == (value,)
    assert (first.value, first.args) == (1, (1,))


@pytest.mark.anyio
@pytest.mark.parametrize(
    "touch",
    [
        "spare.note = 1",
        "spare.add_note('note')",
        "spare.__cause__ = KeyError()",
        "spare.__context__ = KeyError()",
        "spare.__suppress_context__ = True",
        "spare.args = (1, 2)",
        "spare.with_traceback(sys.exc_info()[2])",
    ],
)
async def test_a_spare_touched_at_rest_is_let_go(touch):
    assert await m.ready(0) == 0
    touched = 0
    for spare in spares():
        try:
            raise KeyError
        except KeyError:
            exec(touch, {"spare": spare, "sys": sys})
        touched += 1
    spare = None
    assert touched >= (1 if sys.version_info >= (3, 12) else 0)
    stop = caught(lambda: m.ready(7))
    assert (stop.value, stop.args) == (7, (7,))
    assert stop.__dict__ == {}
    assert not hasattr(stop, "__notes__")
    assert stop.__cause__ is None and stop.__context__ is None
    assert not stop.__suppress_context__


@pytest.mark.anyio
async def test_the_argument_tuple_hashes_as_its_item():
    assert await m.ready(0) == 0
    for spare in spares():
        hash(spare.args)
    spare = None
    for value in (1, "two", (3,)):
        stop = caught(lambda: m.ready(value))
        assert hash(stop.args) == hash((value,))
        assert stop.args == (value,)


@pytest.mark.anyio
async def test_results_of_every_kind():
    error = ValueError("a result, not raised")
    assert await m.ready((1, 2)) == (1, 2)
    assert await m.ready(()) == ()
    assert await m.ready(error) is error
    assert await m.ready(None) is None
    assert caught(lambda: m.ready((1, 2))).args == ((1, 2),)
    assert caught(lambda: m.ready(error)).value is error


@pytest.mark.anyio
async def test_finalizers_that_await_while_a_result_is_released():
    """Releasing the last result runs its finalizer, which drives other Rust coroutines by
    hand: every result stays its own."""

    class Reentrant:
        def __init__(self, depth):
            self.depth = depth

        def __del__(self):
            if self.depth:
                inner = caught(lambda: m.ready(Reentrant(self.depth - 1)))
                assert inner.value.depth == self.depth - 1
                seen.append(self.depth)

    seen = []
    for round in range(20):
        result = await m.ready(Reentrant(3))
        assert result.depth == 3
        del result
        assert await m.ready(round) == round
    assert seen and set(seen) <= {1, 2, 3}


@pytest.mark.anyio
async def test_a_return_inside_an_except_block_chains_as_a_native_one_does():
    async def native():
        return 1

    def context_of(make):
        try:
            raise KeyError("handled")
        except KeyError:
            return type(caught(make).__context__)

    assert context_of(lambda: m.ready(1)) is context_of(native)
    assert await m.ready(2) == 2

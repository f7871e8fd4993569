"""The spare `StopIteration` (src/rust_to_py/stop_iteration.rs): from Python 3.12, `await`
takes a Rust coroutine's result out of a `StopIteration`, and one is kept and refilled while
nobody else holds it. Nobody may see it change, and it may not keep a result alive longer than
the coroutine that returned it. `m.echo` is an exported async function (under abi3 made in the
awaited class, which `await` claims through the `am_await` slot); `m.ready` is a
`Coroutine::new`.

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


@pytest.fixture(autouse=True)
def fresh_thing_log():
    Thing.freed.clear()
    yield


@pytest.mark.anyio
async def test_a_result_is_the_callers_alone_once_awaited():
    result = await m.echo(Thing("a"))
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
    coroutine = m.echo(Thing("a"))
    result = await coroutine
    del result
    assert Thing.freed == ["a"]
    del coroutine


def test_a_stop_iteration_raised_by_hand_is_freed_with_its_traceback():
    """`next()` by hand on a coroutine nobody else holds: the spare's exception goes on into
    Python code, and only the code that caught it keeps it."""
    for name in "abc":
        stop = caught(lambda: m.echo(Thing(name)))
        assert stop.value.name == name
        del stop
        assert Thing.freed[-1] == name
    assert Thing.freed == ["a", "b", "c"]


@pytest.mark.anyio
async def test_an_exception_someone_holds_never_changes():
    first = caught(lambda: m.echo(1))
    for value in range(2, 20):
        assert await m.echo(value) == value
        assert caught(lambda: m.echo(value)).args == (value,)
    assert (first.value, first.args) == (1, (1,))


def at_rest():
    """The StopIterations at rest the collector knows: the spare's shape, `(None, ...)`."""
    return [o for o in gc.get_objects() if type(o) is StopIteration and o.args[:1] == (None,)]


async def the_spare():
    """The spare at rest, found by identity: a tracer sees the exception that an `await`
    unpacks, and the spare is the one still alive afterwards (others, which tests elsewhere
    may keep, are not touched). `None` where no spare is used (before 3.12, and 3.15)."""
    seen = []

    def tracer(frame, event, arg):
        if event == "exception" and frame.f_code is awaits.__code__ and arg[0] is StopIteration:
            seen.append(id(arg[1]))
        return tracer

    async def awaits():
        return await m.echo(0)

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        assert await awaits() == 0
    finally:
        sys.settrace(previous)
    return next((o for o in at_rest() if seen and id(o) == seen[-1]), None)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "touch",
    [
        "spare.note = 1",
        "spare.add_note('note')",
        "spare.__cause__ = KeyError()",
        "spare.__context__ = KeyError()",
        "spare.__suppress_context__ = True",
        "spare.args = (None, 2)",
        "spare.with_traceback(sys.exc_info()[2])",
    ],
)
async def test_a_spare_touched_at_rest_is_let_go(touch):
    spare = await the_spare()
    if not (3, 12) <= sys.version_info < (3, 15):
        # No spare before 3.12, nor yet on 3.15 (src/rust_to_py/stop_iteration.rs).
        assert spare is None
        return
    assert spare is not None and spare.args == (None,)
    touched = id(spare)
    try:
        raise KeyError
    except KeyError:
        exec(touch, {"spare": spare, "sys": sys})
    spare = None
    # Awaited, a result goes through the spare if it is at rest: the touched one may not be
    # refilled (it would carry its change to the next observer), only let go.
    assert await m.echo(7) == 7
    assert not [o for o in at_rest() if id(o) == touched and o.args != (None,)]
    spare = await the_spare()
    assert spare is not None
    assert spare.args == (None,)
    assert spare.__dict__ == {}
    assert not hasattr(spare, "__notes__")
    assert spare.__cause__ is None and spare.__context__ is None
    assert not spare.__suppress_context__
    assert spare.__traceback__ is None


LOOPS = {
    "asyncio": lambda main: __import__("asyncio").run(main()),
    "uvloop": lambda main: __import__("uvloop").run(main()),
    "trio": lambda main: __import__("trio").run(main),
}


@pytest.mark.skipif(sys.version_info >= (3, 15), reason="3.15 reports no exception event at SEND")
@pytest.mark.parametrize("loop", LOOPS)
def test_a_traced_await_sees_arguments_that_hash_as_they_are(loop):
    """A tracer sees the exception `await` unpacks (the spare) and hashes its arguments, which
    caches the hash in the tuple from 3.14: the next result must not inherit it."""
    values = (1, "two", (3,), 4.5, "five")
    seen = []

    def tracer(frame, event, arg):
        if event == "exception" and frame.f_code.co_name == "awaits" and arg[0] is StopIteration:
            stop = arg[1]
            same = stop.args == (stop.value,)
            seen.append((stop.value, same, hash(stop.args) == hash((stop.value,))))
        return tracer

    async def awaits():
        for value in values:
            assert await m.echo(value) == value

    sys.settrace(tracer)
    try:
        LOOPS[loop](awaits)
    finally:
        sys.settrace(None)
    assert seen == [(value, True, True) for value in values]


@pytest.mark.anyio
@pytest.mark.parametrize("make", [m.echo, m.ready], ids=["async-fn", "coroutine-new"])
async def test_results_of_every_kind(make):
    error = ValueError("a result, not raised")
    for _ in range(2):
        assert await make((1, 2)) == (1, 2)
        assert await make(()) == ()
        assert await make(error) is error
        assert await make(None) is None
        assert caught(lambda: make((1, 2))).args == ((1, 2),)
        assert caught(lambda: make(error)).value is error
        result = await make(Thing("x"))
        del result
        assert Thing.freed.pop() == "x"


@pytest.mark.anyio
async def test_finalizers_that_await_while_a_result_is_released():
    """Releasing the last result runs its finalizer, which drives other Rust coroutines by
    hand: every result stays its own."""

    class Reentrant:
        def __init__(self, depth):
            self.depth = depth

        def __del__(self):
            if self.depth:
                inner = caught(lambda: m.echo(Reentrant(self.depth - 1)))
                assert inner.value.depth == self.depth - 1
                seen.append(self.depth)

    seen = []
    for round in range(20):
        result = await m.echo(Reentrant(3))
        assert result.depth == 3
        del result
        assert await m.echo(round) == round
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

    assert context_of(lambda: m.echo(1)) is context_of(native)
    assert await m.echo(2) == 2

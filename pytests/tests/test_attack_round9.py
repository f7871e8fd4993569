"""Attack round 9, on three changes: a generator's step awaitable again until it finished
(`DriverFlags::STEP`, `Coroutine::__await__`; `anext(agen, default)`), reference counts written
inline under abi3 (src/refcount.rs, on the paths of send_slot, stop_iteration, slot_class),
and a step's outcome carrying its error boxed (`PyOutcome`, `Stepped`).

Every scenario that has a native counterpart runs it too (a native async generator or
coroutine, the twin in the same test).

Tried (passing tests below unless listed under FOUND):
- `anext(agen, default)` suspended in one task while another calls `anext(agen, d)`,
  `anext(agen)`, `asend(None)`, `athrow(...)`, `aclose()`: the same "already running" errors
  as native, the same cancellation, the default afterwards, on asyncio, uvloop and trio (the
  one difference, `ag_running` False while a step awaits, is documented: "being polled right
  now");
- `anext(agen, default).__await__()` driven by hand: `close()` then `send()` (RuntimeError, as
  native; the message is the coroutine's, deliberately), `throw` of GeneratorExit,
  KeyboardInterrupt, ValueError (the thrown object, as native);
- a step's `__await__()` taken three times, one iterator sent, another closed: every iterator
  refuses afterwards, as native; a plain coroutine still refuses a second `__await__()`;
- cancellation of a suspended re-awaited step: asyncio.timeout / wait_for on asyncio and
  uvloop, trio.move_on_after on trio, anyio.fail_after everywhere: the timeout
  error, the generator ended, its stream dropped, the default next;
- error outcomes across the boxed path: Exception, KeyError, KeyboardInterrupt, SystemExit,
  GeneratorExit, a BaseException subclass, through `m.fail` (ready and suspended), through a
  generator's item after a suspension (`anext` with and without a default), panics (PanicError,
  then the default); identity kept, `__cause__` of the PEP 479 conversions right, and
  `sys.getrefcount` of every exception, result and class unchanged after hundreds of awaits;
  with the collector off, results, exceptions, steps and generators freed by their count
  alone;
- results and exceptions whose `__del__` re-enters the library (drives a Rust coroutine by
  hand to its end, making and raising a `StopIteration` of its own) while the library lets
  them go;
- immortal results (None, True, small ints, '') and mortal ones through anext-with-default and
  `async for` of a suspending stream: counts unchanged.

FOUND (all three fixed: the tests below now pass as regressions):
1. FIXED (`Driver::deliver`, now in driver/thrown.rs, converts an exception thrown into a
   started coroutine or step through PEP 479: `errors::thrown_out`). (all four configurations, every loop) A `StopAsyncIteration` thrown into a Rust
   generator's suspended step comes back out unchanged, where a native generator's step
   turns it into RuntimeError("async generator raised StopAsyncIteration", PEP 479). Through
   `anext(agen, default)` - newly usable with suspending steps - that is a lie about the
   outcome: `anext(agen, "d")` returns "d", as if the generator had ended normally (an
   `async for` would end silently the same way). Repro: `agen = m.endless(1, m.Probe())`,
   `await anext(agen)`, `it = anext(agen, "d").__await__()`, `it.send(None)`,
   `it.throw(StopAsyncIteration())` raises StopIteration("d"). Cause: `Driver::throw` ->
   `Driver::deliver` (src/rust_to_py/driver/mod.rs) finishes the future and returns the
   thrown exception with `RETHROWN` set; nothing applies a step's PEP 479 conversion
   (`stream_item_error`) to an exception thrown into a generator's step. (A thrown
   StopIteration is not compared: natively it depends on what the generator awaits.)
2. FIXED (`Close::poll_py` converts an exception thrown into a suspended generator with
   `stream_item_error`). (all four configurations, every loop; pre-existing) `agen.athrow(StopAsyncIteration)` on a
   started Rust generator raises StopAsyncIteration; a native one raises RuntimeError("async
   generator raised StopAsyncIteration"). `athrow(StopIteration)` raises RuntimeError worded
   "coroutine raised StopIteration" where native says "async generator raised
   StopIteration". Cause: `Close::poll_py` (src/rust_to_py/async_generator.rs) returns the
   thrown exception as the step's boxed error, and `Driver::run` passes every future error
   through `coroutine_error` (coroutine wording, StopIteration only) instead of the
   generator's `stream_item_error`.
3. FIXED (`errors::replaced` sets the context too). (all four configurations, every loop;
   pre-existing) The PEP 479 RuntimeError of a Rust
   coroutine ("coroutine raised StopIteration") and of a Rust generator ("async generator
   raised StopIteration/StopAsyncIteration") has `__cause__` set but `__context__` None; a
   native one has both set to the original (`_PyErr_FormatFromCause`). A traceback printer
   or anything walking `__context__` loses nothing visible (`__suppress_context__` is True)
   but `raise ... from` semantics differ. Cause: `errors::replaced`
   (src/rust_to_py/errors.rs) calls `set_cause` only.
"""

import asyncio
import gc
import sys
import types
import weakref

import anyio
import anyio.lowlevel
import pytest

import pyo3_async_pytests as m
from helpers import native_fail_after

# ---------------------------------------------------------------------------------------------
# Native twins


async def native_endless(k, probe=None):
    for i in range(k):
        yield i
    await anyio.sleep_forever()


async def native_count_suspending(n):
    for i in range(n):
        await anyio.lowlevel.checkpoint()
        yield i


async def native_count(n):
    for i in range(n):
        yield i


def rust_endless(k, probe=None):
    return m.endless(k, probe if probe is not None else m.Probe())


ENDLESS = {"native": native_endless, "rust": rust_endless}
FAIL_AFTER = {"native": native_fail_after, "rust": m.fail_after}
COUNT_SUSPENDING = {"native": native_count_suspending, "rust": m.count_suspending}
KINDS = ["native", "rust"]


def outcome(call):
    """What a synchronous call did: ("ok", value) or (exception type, message)."""
    try:
        return ("ok", call())
    except BaseException as error:  # noqa: BLE001 (the outcome is the exception)
        return (type(error), str(error))


async def aoutcome(make):
    try:
        return ("ok", await make())
    except BaseException as error:  # noqa: BLE001
        if isinstance(error, anyio.get_cancelled_exc_class()):
            raise
        return (type(error), str(error))


# ---------------------------------------------------------------------------------------------
# FOUND 1: a StopAsyncIteration / StopIteration thrown into a suspended step


def thrown_into_anext_default(agen, exception):
    """`anext(agen, "d")` suspended, then `exception` thrown in, by hand: ("returned", value)
    or the exception's type, message and cause's type."""
    iterator = anext(agen, "d").__await__()
    iterator.send(None)
    try:
        iterator.throw(exception)
    except StopIteration as stop:
        return ("returned", stop.value)
    except BaseException as error:  # noqa: BLE001
        return (type(error), str(error), type(error.__cause__))
    iterator.close()
    return ("suspended",)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["native", "rust"])
async def test_stop_async_iteration_thrown_into_anext_default_is_not_the_end(kind):
    # FOUND 1, against native. (A thrown StopIteration is no comparison: natively it depends
    # on what the generator awaits, an asyncio future's iterator takes it for its own result.)
    agen = ENDLESS[kind](1)
    assert await anext(agen) == 0
    assert thrown_into_anext_default(agen, StopAsyncIteration("x")) == (
        RuntimeError,
        "async generator raised StopAsyncIteration",
        StopAsyncIteration,
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    "kind",
    [
        "native",
        "rust",
    ],
)
async def test_stop_async_iteration_thrown_into_a_suspended_step_directly(kind):
    # Unchanged, it would end an `async for` over the generator silently.
    agen = ENDLESS[kind](1)
    assert await anext(agen) == 0
    step = agen.__anext__()
    step.send(None)
    with pytest.raises(RuntimeError, match="async generator raised StopAsyncIteration"):
        step.throw(StopAsyncIteration("x"))


# ---------------------------------------------------------------------------------------------
# FOUND 2: athrow(StopAsyncIteration / StopIteration)


# Started generators only: athrow() on a fresh native generator raises the exception as it
# is from 3.12 on (StopIteration then reads as the result), PEP 479's RuntimeError before.


@pytest.mark.anyio
async def test_native_athrow_of_stops():
    for thrown in (StopAsyncIteration, StopIteration):
        agen = native_count(3)
        assert await anext(agen) == 0
        kind, message = await aoutcome(lambda agen=agen, thrown=thrown: agen.athrow(thrown))
        assert kind is RuntimeError
        assert message == f"async generator raised {thrown.__name__}"


@pytest.mark.anyio
async def test_athrow_stop_async_iteration_is_pep479():
    agen = m.count(3)
    assert await anext(agen) == 0
    kind, message = await aoutcome(lambda: agen.athrow(StopAsyncIteration))
    assert (kind, message) == (RuntimeError, "async generator raised StopAsyncIteration")


@pytest.mark.anyio
async def test_athrow_stop_iteration_is_worded_as_a_generator():
    agen = m.count(3)
    assert await anext(agen) == 0
    kind, message = await aoutcome(lambda: agen.athrow(StopIteration))
    assert (kind, message) == (RuntimeError, "async generator raised StopIteration")


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_athrow_of_other_exceptions_as_native(kind):
    for thrown in (ValueError("v"), GeneratorExit(), KeyboardInterrupt()):
        agen = (native_count if kind == "native" else m.count)(3)
        assert await anext(agen) == 0
        with pytest.raises(type(thrown)) as raised:
            await agen.athrow(thrown)
        assert raised.value is thrown
        assert await anext(agen, "d") == "d"


# ---------------------------------------------------------------------------------------------
# FOUND 3: the PEP 479 RuntimeError's __context__


async def native_raise_stop_iteration(value):
    await anyio.lowlevel.checkpoint()
    raise StopIteration(value)


async def pep479_error(kind, which):
    if which == "coroutine":
        make = native_raise_stop_iteration if kind == "native" else m.raise_stop_iteration
        try:
            await make(5)
        except RuntimeError as error:
            return error
    else:
        agen = FAIL_AFTER[kind](1, StopAsyncIteration("a"))
        assert await anext(agen, "d") == 0
        try:
            await anext(agen, "d")
        except RuntimeError as error:
            return error
    raise AssertionError("no RuntimeError")


@pytest.mark.anyio
@pytest.mark.parametrize("which", ["coroutine", "generator"])
async def test_pep479_cause_is_the_original(which):
    for kind in KINDS:
        error = await pep479_error(kind, which)
        assert isinstance(error.__cause__, (StopIteration, StopAsyncIteration))
        assert error.__suppress_context__


@pytest.mark.anyio
@pytest.mark.parametrize("which", ["coroutine", "generator"])
async def test_pep479_context_is_the_original(which):
    native = await pep479_error("native", which)
    assert native.__context__ is native.__cause__
    rust = await pep479_error("rust", which)
    assert rust.__context__ is rust.__cause__


# ---------------------------------------------------------------------------------------------
# Interleavings with a suspended anext(agen, default)

SECOND = {
    "anext-default": lambda agen: anext(agen, "d2"),
    "anext": lambda agen: anext(agen),
    "asend": lambda agen: agen.asend(None),
    "athrow": lambda agen: agen.athrow(ValueError("t")),
    "aclose": lambda agen: agen.aclose(),
}


async def interleaved(agen, second):
    assert await anext(agen, "d") == 0
    seen = {}
    entered = anyio.Event()
    async with anyio.create_task_group() as group:

        async def first():
            entered.set()
            seen["first"] = await aoutcome(lambda: anext(agen, "d"))

        group.start_soon(first)
        await entered.wait()
        # Two checkpoints: the first task is inside its step, suspended (each loop runs a
        # ready task within one pass).
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        seen["second"] = await aoutcome(lambda: second(agen))
        group.cancel_scope.cancel()
    seen["after"] = await aoutcome(lambda: anext(agen, "d"))
    seen["aclose"] = await aoutcome(agen.aclose)
    return seen


@pytest.mark.anyio
@pytest.mark.parametrize("second", list(SECOND))
async def test_a_second_operation_while_anext_default_waits(second):
    native = await interleaved(native_endless(1), SECOND[second])
    probe = m.Probe()
    rust = await interleaved(m.endless(1, probe), SECOND[second])
    assert rust == native
    assert rust["second"][0] is RuntimeError
    assert "already running" in rust["second"][1]
    assert "first" not in rust  # cancelled with the group
    assert rust["after"] == ("ok", "d")
    assert probe.dropped


# ---------------------------------------------------------------------------------------------
# anext(agen, default) and steps driven by hand


@pytest.mark.anyio
async def test_anext_default_closed_then_sent():
    # Native (checked by hand, not kept: CPython 3.11 leaves the native generator "already
    # running" for ever after its step is closed, and its finalizer then fails at the loop's
    # end): the same RuntimeError, worded "cannot reuse already awaited __anext__()/asend()".
    agen = rust_endless(1)
    assert await anext(agen) == 0
    iterator = anext(agen, "d").__await__()
    iterator.send(None)
    assert iterator.close() is None
    for _ in range(2):
        kind, message = outcome(lambda: iterator.send(None))
        assert kind is RuntimeError
        assert "cannot reuse already awaited" in message


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "thrown", [GeneratorExit(), KeyboardInterrupt(), SystemExit(2), ValueError("v")], ids=repr
)
async def test_anext_default_thrown_into_by_hand(kind, thrown):
    agen = ENDLESS[kind](1)
    assert await anext(agen) == 0
    iterator = anext(agen, "d").__await__()
    iterator.send(None)
    with pytest.raises(type(thrown)) as raised:
        iterator.throw(thrown)
    assert raised.value is thrown
    # The generator ended with its step (a native one, its frame raised through).
    assert await anext(agen, "d") == "d"


@pytest.mark.anyio
async def test_a_step_awaited_three_times_then_one_closed():
    # Native (by hand, not kept, as above): every iterator refuses, RuntimeError.
    agen = rust_endless(1)
    assert await anext(agen) == 0
    step = agen.__anext__()
    iterators = [step.__await__() for _ in range(3)]
    assert all(iterator is step for iterator in iterators)
    iterators[0].send(None)
    iterators[1].close()
    for iterator in iterators:
        kind, message = outcome(lambda iterator=iterator: iterator.send(None))
        assert kind is RuntimeError
        assert "cannot reuse already awaited" in message
    assert await anext(agen, "d") == "d"


@pytest.mark.anyio
async def test_a_plain_coroutine_still_refuses_a_second_await():
    coroutine = m.sleep(10, 1)
    assert coroutine.__await__() is coroutine
    with pytest.raises(RuntimeError, match="coroutine is being awaited already"):
        coroutine.__await__()
    coroutine.send(None)
    with pytest.raises(RuntimeError, match="coroutine is being awaited already"):
        coroutine.__await__()
    coroutine.close()
    with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
        coroutine.__await__()


# ---------------------------------------------------------------------------------------------
# Cancellation of a re-awaited step


async def cancel_anext_default(agen, loop_name, how):
    assert await anext(agen, "d") == 0
    if how == "anyio":
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.01):
                await anext(agen, "d")
    elif loop_name == "trio":
        import trio

        with trio.move_on_after(0.01) as scope:
            await anext(agen, "d")
        assert scope.cancelled_caught
    elif sys.version_info >= (3, 11) and how == "native-timeout":
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await anext(agen, "d")
    else:
        # 3.10's is asyncio's own class; from 3.11 it is the builtin.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(anext(agen, "d"), 0.01)
    return await anext(agen, "d")


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["anyio", "native-timeout", "wait_for"])
async def test_a_re_awaited_step_cancelled(loop_name, how):
    if loop_name == "trio" and how == "wait_for":
        pytest.skip("asyncio.wait_for is asyncio's")
    assert await cancel_anext_default(native_endless(1), loop_name, how) == "d"
    probe = m.Probe()
    assert await cancel_anext_default(m.endless(1, probe), loop_name, how) == "d"
    assert probe.dropped


# ---------------------------------------------------------------------------------------------
# Error outcomes across the boxed path


class Custom(BaseException):
    pass


EXCEPTIONS = [
    lambda: ValueError("v"),
    lambda: KeyError("k"),
    lambda: KeyboardInterrupt(),
    lambda: SystemExit(3),
    lambda: GeneratorExit(),
    lambda: Custom("c"),
]
EXCEPTION_IDS = ["ValueError", "KeyError", "KeyboardInterrupt", "SystemExit", "GeneratorExit", "Custom"]


def forget_raise(error):
    """What a raise left on the exception: gone, so that counts compare."""
    error.__traceback__ = None
    error.__context__ = None


@pytest.mark.anyio
@pytest.mark.parametrize("make", EXCEPTIONS, ids=EXCEPTION_IDS)
async def test_exception_counts_through_fail(make):
    error = make()
    before = sys.getrefcount(error)
    for suspend in (False, True) * 100:
        try:
            await m.fail(error, suspend)
        except BaseException as raised:  # noqa: BLE001
            assert raised is error
        forget_raise(error)
    assert sys.getrefcount(error) == before


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("make", EXCEPTIONS, ids=EXCEPTION_IDS)
async def test_exception_counts_through_a_generator_item(kind, make):
    error = make()
    before = sys.getrefcount(error)
    for with_default in (False, True) * 50:
        agen = FAIL_AFTER[kind](1, error)
        assert await anext(agen) == 0
        try:
            await (anext(agen, "d") if with_default else anext(agen))
        except BaseException as raised:  # noqa: BLE001
            assert raised is error
        else:  # pragma: no cover
            pytest.fail("no exception")
        forget_raise(error)
        assert await anext(agen, "d") == "d"
        del agen
    assert sys.getrefcount(error) == before


@pytest.mark.anyio
@pytest.mark.parametrize("thrown", [StopIteration, StopAsyncIteration], ids=lambda t: t.__name__)
async def test_pep479_original_counts_and_identity(thrown):
    error = thrown("x")
    before = sys.getrefcount(error)
    for _ in range(100):
        agen = m.fail_after(1, error)
        assert await anext(agen, "d") == 0
        with pytest.raises(RuntimeError, match=f"async generator raised {thrown.__name__}") as raised:
            await anext(agen, "d")
        assert raised.value.__cause__ is error
        del raised
        forget_raise(error)
        error.__cause__ = None
        del agen
    assert sys.getrefcount(error) == before


@pytest.mark.anyio
async def test_panics_through_anext_default():
    for _ in range(3):
        agen = m.panic_after(1, "boom")
        assert await anext(agen, "d") == 0
        with pytest.raises(m.PanicError, match="boom"):
            await anext(agen, "d")
        assert await anext(agen, "d") == "d"


@pytest.mark.anyio
async def test_freed_by_count_alone():
    class Box:
        pass

    class Error(ValueError):
        pass

    gc.disable()
    try:
        # Rust only: a native generator's exception is held in a cycle (its traceback, the
        # generator's frame, the frame's local) until the collector runs.
        for _ in range(3):
            error = Error("freed")
            refs = [weakref.ref(error)]
            agen = m.fail_after(1, error)
            del error
            step = agen.__anext__()
            refs.append(weakref.ref(step))
            assert await step == 0
            del step
            try:
                await anext(agen, "d")
            except Error:
                pass
            refs.append(weakref.ref(agen))
            del agen
            assert [ref() for ref in refs] == [None, None, None]
        box = Box()
        ref = weakref.ref(box)
        results = m.calls_back(iter([box, None]).__next__)
        del box
        assert (await anext(results, "d")) is ref()
        assert await anext(results, "d") == "d"
        del results
        assert ref() is None
    finally:
        gc.enable()


# ---------------------------------------------------------------------------------------------
# Reference counts of results through anext-with-default and suspending streams

RESULTS = [
    pytest.param(lambda: object(), id="object"),
    pytest.param(lambda: None, id="None", marks=pytest.mark.skipif(sys.version_info < (3, 12), reason="None mortal")),
    pytest.param(lambda: True, id="True"),
    pytest.param(lambda: 7, id="small-int"),
    pytest.param(lambda: "", id="empty-str"),
    pytest.param(lambda: 10**40, id="big-int"),
    pytest.param(lambda: (object(),), id="tuple"),
    pytest.param(lambda: StopIteration(1), id="StopIteration-instance"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("result", RESULTS)
async def test_result_counts_through_anext_default(result):
    value = result()
    if value is None:
        pytest.skip("calls_back ends at None")
    before = sys.getrefcount(value)
    remaining = [300]

    def next_item():
        if remaining[0] == 0:
            return None
        remaining[0] -= 1
        return value

    agen = m.calls_back(next_item)
    while (item := await anext(agen, agen)) is not agen:
        assert item is value
    del item, agen
    assert sys.getrefcount(value) == before


@pytest.mark.anyio
async def test_counts_through_a_suspending_stream():
    # Small ints are shared (and immortal from 3.12): the classes' counts are what can move.
    # Under abi3 `await` and `async for` move steps and generators into subclasses: counted too.
    agen = m.count_suspending(2)
    step = agen.__anext__()
    assert await step == 0
    async for _ in agen:
        pass
    classes = (m.Coroutine, m.AsyncGenerator, type(step), type(agen))
    del agen, step
    before = [sys.getrefcount(c) for c in classes]
    for _ in range(30):
        assert [i async for i in m.count_suspending(5)] == [0, 1, 2, 3, 4]
        agen = m.count_suspending(3)
        assert [await anext(agen, "d") for _ in range(4)] == [0, 1, 2, "d"]
        del agen
    assert [sys.getrefcount(c) for c in classes] == before


# ---------------------------------------------------------------------------------------------
# Finalizers that re-enter the library while it lets objects go


def drive_by_hand(coroutine):
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("suspended")  # pragma: no cover


class Reentrant:
    """Drives a Rust coroutine by hand to its end when freed (its own StopIteration)."""

    ran = []

    def __del__(self):
        Reentrant.ran.append(drive_by_hand(m.echo(("inner", object()))))


class ReentrantError(Exception):
    def __del__(self):
        Reentrant.ran.append(drive_by_hand(m.echo("from error")))


@pytest.mark.anyio
async def test_finalizers_reentering_while_results_and_errors_go():
    Reentrant.ran.clear()
    gc.disable()
    try:
        for _ in range(20):
            assert isinstance(await m.echo(Reentrant()), Reentrant)
            agen = m.calls_back(iter([Reentrant(), Reentrant(), None]).__next__)
            async for item in agen:
                assert isinstance(item, Reentrant)
            del item, agen
            agen = m.fail_after(1, ReentrantError("e"))
            assert await anext(agen, "d") == 0
            with pytest.raises(ReentrantError):
                await anext(agen, "d")
            del agen
        # Each finalizer ran once, at once, with its own result.
        assert len(Reentrant.ran) == 20 * 4
        assert Reentrant.ran.count("from error") == 20
        assert all(r == "from error" or r[0] == "inner" for r in Reentrant.ran)
    finally:
        gc.enable()
        Reentrant.ran.clear()


# ---------------------------------------------------------------------------------------------
# anext(agen, default) on suspending streams, native parity


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_alternating_anext_forms(kind):
    agen = COUNT_SUSPENDING[kind](6)
    seen = [
        await anext(agen, "d"),
        await anext(agen),
        await agen.asend(None),
        await anext(agen, "d"),
        await agen.__anext__(),
    ]
    assert seen == [0, 1, 2, 3, 4]
    assert await agen.aclose() is None
    assert await anext(agen, "d") == "d"
    with pytest.raises(StopAsyncIteration):
        await anext(agen)


@types.coroutine
def yield_from_await(awaitable):
    return (yield from awaitable.__await__())


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_anext_default_through_yield_from_and_tasks(kind, loop_name):
    agen = COUNT_SUSPENDING[kind](3)
    assert await yield_from_await(anext(agen, "d")) == 0
    assert await yield_from_await(agen.__anext__()) == 1
    if loop_name != "trio":
        assert await asyncio.ensure_future(anext(agen, "d")) == 2
        assert await asyncio.gather(anext(agen, "d")) == ["d"]
    else:
        assert await anext(agen, "d") == 2

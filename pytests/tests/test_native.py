"""A Rust coroutine as native as an `async def` one (src/native.rs): forgotten tasks parked on
it are freed by the cyclic collector, and one that is never awaited warns as CPython's do.

Every collection test counts the objects freed with `weakref` after `gc.collect()`, against a
native control in the same test."""

import asyncio
import gc
import sys
import warnings
import weakref

import pytest

import pyo3_async_pytests as m
import helpers
from helpers import forgotten_tasks, freed, sized

N = sized(1_000, 10_000)



async def start_forgotten(make, count=N):
    return await helpers.start_forgotten(make, count)


async def cancel_remaining(refs):
    alive = [task for task in (ref() for ref in refs) if task is not None]
    for task in alive:
        task.cancel()
    await asyncio.gather(*alive, return_exceptions=True)


async def native_parked():
    await asyncio.get_running_loop().create_future()


@pytest.mark.anyio
async def test_forgotten_tasks_parked_on_a_rust_coroutine_are_freed_as_native_ones(loop_name):
    forgotten_tasks(loop_name)
    dropped = m.futures_dropped()
    ours = await start_forgotten(m.parks_forever)
    native = await start_forgotten(native_parked)
    assert (freed(ours), freed(native)) == (N, N)
    # The collector closed each coroutine: its future was dropped, its destructor ran.
    assert m.futures_dropped() - dropped == N


@pytest.mark.anyio
async def test_forgotten_tasks_delegating_to_a_python_future_are_freed(loop_name):
    forgotten_tasks(loop_name)
    dropped = m.futures_dropped()
    ours = await start_forgotten(m.awaits_its_own_future)
    native = await start_forgotten(native_parked)
    assert (freed(ours), freed(native)) == (N, N)
    assert m.futures_dropped() - dropped == N


@pytest.mark.anyio
async def test_forgotten_native_coroutines_awaiting_rust_ones_are_freed(loop_name):
    # Under abi3 the native frame holds the `__await__` wrapper, which the collector sees too.
    forgotten_tasks(loop_name)
    dropped = m.futures_dropped()

    async def awaits_rust():
        await m.parks_forever()

    async def awaits_native():
        await native_parked()

    ours = await start_forgotten(awaits_rust)
    native = await start_forgotten(awaits_native)
    assert (freed(ours), freed(native)) == (N, N)
    assert m.futures_dropped() - dropped == N


@pytest.mark.anyio
async def test_collecting_a_future_whose_destructor_panics_contains_the_panic(loop_name):
    # The collector closes the coroutine: the panic of the future's destructor stays in Rust
    # (an abort would end the test process).
    # A hundred: each panic runs the panic hook, which with RUST_BACKTRACE=1 symbolises a
    # backtrace (15 ms each on 3.12 and 3.13's asyncio, 2.5 min for ten thousand).
    forgotten_tasks(loop_name)
    ours = await start_forgotten(lambda: m.panics_on_drop(False), 100)
    assert freed(ours) == 100


@pytest.mark.anyio
async def test_a_rust_future_that_keeps_its_own_waker_stays_alive(loop_name):
    # Documented limit (guide/native.md): a waker kept anywhere is a root the collector cannot
    # see, as a native task's future is alive while something can resolve it. Here the future
    # keeps it in its own state, which only Rust can see: such tasks are not freed.
    forgotten_tasks(loop_name)
    ours = await start_forgotten(m.keeps_its_own_waker)
    assert freed(ours) == 0
    await cancel_remaining(ours)


def test_an_unawaited_rust_coroutine_in_a_cycle_with_its_argument_stays_alive():
    # Documented limit: the argument lives inside the Rust future, which the collector cannot
    # see through. A native coroutine's frame is visible: it is freed.
    class Holder:
        pass

    async def native_echo(value):
        return value

    def cycles(make):
        refs = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for _ in range(100):
                holder = Holder()
                holder.coroutine = make(holder)
                refs.append(weakref.ref(holder))
            del holder
            return freed(refs)

    assert (cycles(m.echo), cycles(native_echo)) == (0, 100)


def warning_of(create):
    """The one warning that creating and dropping a coroutine gives, with its line."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        create()
    assert len(record) == 1, [str(w.message) for w in record]
    return record[0], line


def test_a_rust_coroutine_never_awaited_warns_as_a_native_one_does():
    async def native(value):
        return value

    ours, ours_line = warning_of(lambda: m.echo(1))
    theirs, theirs_line = warning_of(lambda: native(1))
    assert str(ours.message) == "coroutine 'echo' was never awaited"
    assert str(theirs.message) == (
        "coroutine "
        "'test_a_rust_coroutine_never_awaited_warns_as_a_native_one_does.<locals>.native'"
        " was never awaited"
    )
    # Both point at the code that dropped them: the lambda, on `warning_of`'s line.
    for warning, line in ((ours, ours_line), (theirs, theirs_line)):
        assert warning.category is RuntimeWarning
        assert (warning.filename, warning.lineno) == (__file__, line)


def test_the_warning_names_the_caller_line():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        m.echo(1); line = sys._getframe().f_lineno  # noqa: E702
    assert [(w.filename, w.lineno) for w in record] == [(__file__, line)]


def test_a_method_names_its_class():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        m.Adder(1).add(2)
    assert [str(w.message) for w in record] == ["coroutine 'Adder.add' was never awaited"]


@pytest.mark.parametrize(
    "use",
    [
        pytest.param(lambda c: asyncio.run(c), id="awaited"),
        pytest.param(lambda c: c.close(), id="closed"),
        pytest.param(lambda c: (c.send(None), c.close()), id="started"),
        pytest.param(lambda c: (c.__await__(), c.close()), id="await-called"),
    ],
)
def test_no_warning_once_awaited_started_or_closed(use):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        coroutine = m.echo(1)
        try:
            use(coroutine)
        except StopIteration:
            pass
        del coroutine
        gc.collect()
    assert [str(w.message) for w in record] == []


def test_async_generator_steps_do_not_warn():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        generator = m.count(3)
        generator.__anext__()
        generator.aclose()
        generator.asend(None)
        del generator
    assert [str(w.message) for w in record] == []


def test_as_an_error_the_warning_is_unraisable_as_cpythons_is():
    seen = []
    hook = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            m.echo(1)
    finally:
        sys.unraisablehook = hook
    assert [type(u.exc_value) for u in seen] == [RuntimeWarning]
    assert str(seen[0].exc_value) == "coroutine 'echo' was never awaited"


def test_an_exception_being_raised_survives_the_warning():
    def raises_while_dropping():
        coroutine = m.echo(1)  # noqa: F841: dropped while the KeyError unwinds
        raise KeyError("kept")

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(KeyError, match="kept"):
            raises_while_dropping()
        gc.collect()
    assert [str(w.message) for w in record] == ["coroutine 'echo' was never awaited"]

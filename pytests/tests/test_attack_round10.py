"""Attack round 10, on two changes: the raw slots CPython calls on a coroutine or generator step
(`am_send`, `tp_iternext`) entering Rust through PyO3's trampoline (src/rust_to_py/slot_entry.rs),
and `mark_coroutine_functions` wrapping each function in a `def` (3.12+) or `async def`
declaring its own parameters (src/glue/coroutine_functions.py).

Tried (all passing unless listed under FOUND):
- slots: a reference dropped in the step that ends a stream released in that step, stepped by
  a native `await` and by `next()`, on the main thread, on other threads (several at once), in
  a `__del__` run by the collector, in a `gc.callbacks` hook and a `weakref.finalize`, in a step
  nested inside another step's poll (and a step re-entering its own generator), at
  interpreter exit (`atexit`, module teardown, collected cycles) and after a tokio thread let a
  Python result go; panics (PanicError, PyO3's PanicException) and errors of every kind
  (identity kept) through hand-driven slot steps, here and on threads; on every loop, an
  `async for` whose last item drops the callback;
- marking: every parameter kind and mix, defaults (None, bools, floats with NaN and -0.0,
  strings with quotes, backslashes, NUL and unicode, bytes, sentinels kept by identity, `...`),
  names the wrapper uses itself (`_function`, `cls`, `_default0`, `forwarding`, `print`,
  `__builtins__`, `__class__`), a forged keyword name and a broken `__signature__` (the
  `*args, **kwargs` fallback), PyO3 functions (positional-only, keyword-only, a builtin's name)
  and methods, Python methods, static and class methods, marking twice and twice in one call;
  signatures, `__wrapped__`, names, docstrings, wrong calls, and results, exceptions and
  cancellation on every loop.

FOUND (both older than the two changes; fixed, their tests pass):
1. a step started by a finaliser that the collector ran during the import of sniffio (which
   the first backend detection makes) waited for ever on the same thread: PyO3's `PyOnceLock`
   deadlocks when its making is re-entered. The crate's per-process values are now `Lazy`
   (src/lazy.rs): made outside any lock, stored once;
2. a stream ending in a finaliser at module teardown raised `PanicError`, not
   `StopAsyncIteration`: PyO3 makes a lazy error's exception detached and attaches again with
   `Python::attach`, which panics once the interpreter finalises. Errors are now made on the
   step's thread before they are read (`errors::made`).
"""

import functools
import gc
import inspect
import sys
import threading
import types
import weakref

import anyio
import pytest

import pyo3_async_pytests as m
from helpers import run_script, until

MARKABLE = sys.version_info >= (3, 12)


class Finalised:
    """A stream callback yielding `n` items then None (the stream's end), logging its death."""

    def __init__(self, log, n=0):
        self.log, self.n = log, n

    def __call__(self):
        self.n -= 1
        return None if self.n < 0 else self.n

    def __del__(self):
        self.log.append("finalised")


async def native_await(awaitable):
    return await awaitable


def step(coroutine, how="await"):
    """One hand-driven step: by a native `await` (the slot) or by `next()`."""
    try:
        return ("yield", native_await(coroutine).send(None) if how == "await" else next(coroutine))
    except StopIteration as stop:
        return ("return", stop.value)
    except BaseException as error:  # noqa: BLE001 (the outcome is the exception)
        return ("raise", error)


def drain_stream(n, log, how="await"):
    """A `calls_back` stream of `n` items stepped to its end; what `log` held at the end."""
    agen = m.calls_back(Finalised(log, n))
    outcomes = [step(agen.__anext__(), how) for _ in range(n + 1)]
    assert [o[1] for o in outcomes[:-1]] == list(range(n - 1, -1, -1))
    assert outcomes[-1][0] == "raise" and type(outcomes[-1][1]) is StopAsyncIteration
    return list(log)


def on_thread(function, *args):
    result = []
    thread = threading.Thread(target=lambda: result.append(function(*args)))
    thread.start()
    thread.join()
    return result[0]


# ---- slot entry: references released in the step ------------------------------------------


@pytest.mark.parametrize("how", ["await", "next"])
@pytest.mark.parametrize("where", ["here", "thread"])
def test_a_reference_dropped_in_the_last_step_goes_in_it(how, where):
    for n in (0, 1, 3):
        log = []
        seen = drain_stream(n, log, how) if where == "here" else on_thread(drain_stream, n, log, how)
        assert seen == ["finalised"]


def test_many_threads_stepping_by_hand_at_once():
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    errors = []

    def work(i):
        try:
            for _ in range(200):
                assert step(m.ready(i, "asyncio")) == ("return", i)
                assert drain_stream(2, []) == ["finalised"]
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        work(-1)
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert errors == []


def test_steps_inside_collector_callbacks():
    seen = []

    class Cycle:
        def __del__(self):
            seen.append(("del", drain_stream(1, [])))

    def hook(phase, info):
        if phase == "stop" and not any(label == "hook" for label, _ in seen):
            seen.append(("hook", drain_stream(0, [])))

    cycle = Cycle()
    cycle.me = cycle
    weakref.finalize(cycle, lambda: seen.append(("finalize", drain_stream(2, []))))
    del cycle
    gc.callbacks.append(hook)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(hook)
    assert sorted(seen) == [(label, ["finalised"]) for label in ("del", "finalize", "hook")]


@pytest.mark.parametrize("how", ["await", "next"])
def test_a_step_nested_in_another_steps_poll(how):
    inner_logs, depth = [], [0]

    def callback():
        if depth[0] >= 3:
            return None
        depth[0] += 1
        log = []
        inner_logs.append(drain_stream(1, log, how))
        return depth[0]

    outer = m.calls_back(callback)
    assert step(outer.__anext__(), how) == ("return", 1)
    assert inner_logs == [["finalised"]]


def test_a_step_reentering_its_own_generator_is_refused_and_the_outer_goes_on():
    holder = []

    def callback():
        if len(holder) > 1:
            return None
        kind, error = step(holder[0].__anext__())
        holder.append(error)
        return "outer"

    holder.append(m.calls_back(callback))
    assert step(holder[0].__anext__()) == ("return", "outer")
    assert type(holder[1]) is RuntimeError and "already running" in str(holder[1])
    assert step(holder[0].__anext__())[0] == "raise"


# ---- slot entry: panics and errors ----------------------------------------------------------


def panic_outcome(pyo3_style):
    m.use_pyo3_panics(pyo3_style)
    try:
        return [step(m.panic("round 10", False)), step(native_await(m.panic("round 10", False)))]
    finally:
        m.use_pyo3_panics(False)


@pytest.mark.parametrize("pyo3_style", [False, True], ids=["PanicError", "PanicException"])
@pytest.mark.parametrize("where", ["here", "thread"])
def test_panics_in_hand_driven_slot_steps(pyo3_style, where):
    outcomes = panic_outcome(pyo3_style) if where == "here" else on_thread(panic_outcome, pyo3_style)
    for kind, error in outcomes:
        assert kind == "raise" and error.args == ("round 10",)
        if pyo3_style:
            assert type(error).__name__ == "PanicException" and not isinstance(error, Exception)
        else:
            assert type(error) is m.PanicError
    assert step(m.ready(1, "asyncio")) == ("return", 1)


ERRORS = [KeyError("k"), KeyboardInterrupt(), SystemExit(3), GeneratorExit(), ValueError()]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("how", ["await", "next"])
def test_errors_keep_their_identity_through_slot_steps(error, how):
    assert step(m.fail(error, False), how) == ("raise", error)
    assert on_thread(step, m.fail(error, False), how) == ("raise", error)

    def callback():
        raise error

    assert on_thread(step, m.calls_back(callback).__anext__(), how) == ("raise", error)


# ---- slot entry: exit, queued references, every loop ----------------------------------------


def test_steps_during_interpreter_exit():
    out = run_script(
        """
        import atexit, gc, sys
        import pyo3_async_pytests as m

        class Finalised:
            def __call__(self):
                return None
            def __del__(self):
                print("finalised", flush=True)

        async def native_await(c):
            return await c

        def drain(label):
            agen = m.calls_back(Finalised())
            try:
                native_await(agen.__anext__()).send(None)
            except StopAsyncIteration:
                print(label, "ended", flush=True)
            try:
                next(m.ready(7, "asyncio"))
            except StopIteration as stop:
                print(label, stop.value, flush=True)

        class Teardown:
            def __del__(self):
                drain("teardown")

        atexit.register(drain, "atexit")
        keep = Teardown()
        suspended = m.count_suspending(3)  # alive at exit, never finished
        pending = native_await(suspended.__anext__())
        print("done", flush=True)
        """
    )
    lines = out.splitlines()
    assert lines[0] == "done"
    for label in ("atexit", "teardown"):
        at = lines.index(f"{label} ended")
        assert lines[at - 1 : at + 2] == ["finalised", f"{label} ended", f"{label} 7"]


def test_a_finaliser_run_during_the_first_sniffio_import_steps_a_generator():
    run_script(
        """
        import gc, sys
        import pyo3_async_pytests as m

        assert "sniffio" not in sys.modules

        class Cycle:
            def __del__(self):
                m.count(1).__anext__().close()
                print("inner step made", flush=True)

        class CollectOnSniffio:  # stands for a collection that happens during the import
            def find_spec(self, name, path=None, target=None):
                if name == "sniffio":
                    gc.collect()

        sys.meta_path.insert(0, CollectOnSniffio())
        cycle = Cycle()
        cycle.me = cycle
        del cycle
        m.count(1).__anext__().close()
        print("done", flush=True)
        """,
        timeout=10,
    )


def test_a_stream_ending_in_a_teardown_finaliser_ends():
    out = run_script(
        """
        import pyo3_async_pytests as m

        async def native_await(c):
            return await c

        class Teardown:
            def __del__(self):
                try:
                    native_await(m.calls_back(lambda: None).__anext__()).send(None)
                except BaseException as error:
                    print(type(error).__name__, flush=True)

        keep = Teardown()
        print("done", flush=True)
        """,
        forbidden=("fatal python error", "Traceback"),
    )
    assert out.splitlines() == ["done", "StopAsyncIteration"]


@pytest.mark.anyio
async def test_a_result_let_go_by_a_tokio_thread_is_gone_after_a_step(loop_name):
    if loop_name == "trio":
        pytest.skip("spawn_detached runs on asyncio loops")

    class Payload:
        pass

    payload = Payload()
    ref, done = weakref.ref(payload), []

    async def give(payload=payload):
        done.append(True)
        return payload

    del payload
    m.spawn_detached(give)
    del give
    await until(lambda: bool(done))
    await anyio.lowlevel.checkpoint()
    assert m.detached_outcomes(1) == ["ok"]
    assert step(m.ready(1, "asyncio")) == ("return", 1)
    assert ref() is None


@pytest.mark.anyio
async def test_an_async_for_releases_its_callback_in_the_last_step():
    log = []
    items = [item async for item in m.calls_back(Finalised(log, 3))]
    log.append("after")
    assert items == [2, 1, 0] and log == ["finalised", "after"]


# ---- marking: shapes, defaults, names --------------------------------------------------------

SENTINEL = object()
STRING = "q\"'\\\x00é☃\n"


def every_kind(a, b=None, /, c=True, *args, d, e=STRING, **kwargs):
    return m.echo((a, b, c, args, d, e, kwargs))


def defaults(a=False, b=0.5, c=float("nan"), d=-0.0, e=b"\x00'", f=SENTINEL, g=(), h=print):
    return m.echo((a, b, c, d, e, f, g, h))


def clashing(_function, cls, _default0=1, forwarding=2, print=3, *, __builtins__=4, __class__=5):
    return m.echo((_function, cls, _default0, forwarding, print, __builtins__, __class__))


def ellipsis_default(a, b=...):
    return m.echo((a, b))


def forged_keyword(*args, **kwargs):
    return m.echo((args, kwargs))


keyword = inspect.Parameter("x", inspect.Parameter.POSITIONAL_OR_KEYWORD)
keyword._name = "in"  # noqa: SLF001 (a name no Python code can declare)
forged_keyword.__signature__ = inspect.Signature([keyword])
broken_signature = functools.partial(forged_keyword)
broken_signature.__signature__ = "not a signature"

CALLS = {
    "every_kind": [((1,), {"d": 4}), ((1, 2, 3, 9, 9), {"d": 4, "e": 5, "z": 6}), ((1,), {"c": 3, "d": 4})],
    "defaults": [((), {}), ((1, 2), {"h": 3})],
    "clashing": [((1, 2), {}), ((1,), {"cls": 2, "print": 7, "__builtins__": 8, "__class__": 9})],
    "ellipsis_default": [((1,), {}), ((1, 2), {})],
    "forged_keyword": [((1,), {})],
    "broken_signature": [((1,), {"k": 2})],
}
WRONG = {
    "every_kind": [((), {"d": 1}), ((1,), {}), ((1, 2, 3), {"c": 1, "d": 1})],
    "defaults": [((1,), {"a": 1}), ((), {"z": 1})],
    "clashing": [((1,), {}), ((1, 2, 3, 4, 5, 6), {})],
    "ellipsis_default": [((), {}), ((1, 2, 3), {})],
}
PYTHON_FUNCTIONS = {
    "every_kind": every_kind,
    "defaults": defaults,
    "clashing": clashing,
    "ellipsis_default": ellipsis_default,
    "forged_keyword": forged_keyword,
    "broken_signature": broken_signature,
}


def marked_module(**functions):
    module = types.ModuleType("round10")
    for name, function in functions.items():
        setattr(module, name, function)
    m.mark(module, list(functions))
    return module


def shape(signature):
    """A signature's parameters, defaults by identity (NaN is no equal of itself)."""
    return [(p.name, p.kind, id(p.default)) for p in signature.parameters.values()]


def same(x, y):
    """Equal, NaN included, and the same object where it is one (a default passed on)."""
    if isinstance(x, tuple) and isinstance(y, tuple):
        return len(x) == len(y) and all(same(a, b) for a, b in zip(x, y))
    if isinstance(x, float) and x != x:
        return y is x
    return x == y and (type(x) is type(y))


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(CALLS))
async def test_marked_python_functions_pass_every_call_on(name):
    original = PYTHON_FUNCTIONS[name]
    marked = getattr(marked_module(**{name: original}), name)
    assert inspect.iscoroutinefunction(marked) is True
    assert marked.__wrapped__ is original
    if name != "broken_signature":
        assert shape(inspect.signature(marked)) == shape(inspect.signature(original))
    for args, kwargs in CALLS[name]:
        got, expected = await marked(*args, **kwargs), await original(*args, **kwargs)
        assert same(got, expected), (got, expected)
        if name == "defaults" and not args:
            assert got[5] is SENTINEL and got[7] is print and got[2] is expected[2]
    for args, kwargs in WRONG.get(name, []):
        fallback = name == "ellipsis_default"
        if MARKABLE or not fallback:
            with pytest.raises(TypeError):
                marked(*args, **kwargs)
        else:
            with pytest.raises(TypeError):
                await marked(*args, **kwargs)


@pytest.mark.skipif(not MARKABLE, reason="3.12+ wrappers return the function's coroutine")
@pytest.mark.parametrize("name", ["every_kind", "defaults", "clashing"])
def test_the_wrapper_declares_the_parameters_it_can(name):
    original = PYTHON_FUNCTIONS[name]
    marked = getattr(marked_module(**{name: original}), name)
    assert shape(inspect.signature(marked, follow_wrapped=False)) == shape(inspect.signature(original))
    assert marked.__code__.co_flags & inspect.CO_VARARGS == original.__code__.co_flags & inspect.CO_VARARGS
    coroutine = marked(*CALLS[name][0][0], **CALLS[name][0][1])
    assert type(coroutine).__name__ == "Coroutine"
    coroutine.close()


@pytest.mark.anyio
async def test_marked_pyo3_functions_keep_their_shapes():
    module = marked_module(
        positional_only=m.positional_only, keyword_only=m.keyword_only, type=m.type, ready=m.ready, eight=m.eight
    )
    assert await module.positional_only(1) == 3 and await module.positional_only(1, b=5) == 6
    assert await module.keyword_only(1) == 2 and await module.keyword_only(a=1, key=5) == 6
    assert await module.type(value=4) == 4 and await module.ready(SENTINEL) is SENTINEL
    assert await module.eight(*range(8)) == sum(range(8))
    for call in (lambda: module.positional_only(a=1), lambda: module.keyword_only(1, 5), lambda: module.eight(1)):
        with pytest.raises(TypeError):
            call()
    for name in ("positional_only", "keyword_only", "type", "ready"):
        marked, original = getattr(module, name), getattr(m, name)
        assert inspect.signature(marked) == inspect.signature(original)
        assert (marked.__name__, marked.__qualname__, marked.__doc__) == (name, name, original.__doc__)


@pytest.mark.anyio
async def test_marked_methods_of_every_kind_bind_as_before():
    class Owner:
        renamed = m.Account.__dict__["renamed_too"]  # a method descriptor of another class

        def method(self, _function, *, cls=1):
            return m.echo((self, _function, cls))

        @staticmethod
        def static(self=2):
            return m.echo(self)

        @classmethod
        def klass(cls, _cls=3, /):
            return m.echo((cls, _cls))

    names = ["renamed", "method", "static", "klass"]
    m.mark(Owner, names + names)  # twice in one call: marked once
    first = {name: Owner.__dict__[name] for name in names}
    m.mark(Owner, names)
    assert {name: Owner.__dict__[name] for name in names} == first
    owner, account = Owner(), m.Account(0)
    assert await Owner.renamed(account, 1) == 4 and await Owner.renamed(account, a=1, b=5) == 6
    assert await owner.method(0) == (owner, 0, 1) and await Owner.method(owner, 0, cls=5) == (owner, 0, 5)
    assert await owner.static() == 2 and await Owner.static(self=7) == 7
    assert await owner.klass() == (Owner, 3) and await Owner.klass(4) == (Owner, 4)
    with pytest.raises(TypeError):
        await owner.renamed(1)  # binds an Owner as the Account's `self` (fails at the call 3.12+)
    with pytest.raises(TypeError):
        Owner.klass(_cls=4)
    for name in names:
        assert inspect.iscoroutinefunction(getattr(Owner, name)) is True
        assert inspect.iscoroutinefunction(getattr(owner, name)) is True
    assert Owner.method.__qualname__.endswith("Owner.method")
    assert inspect.signature(owner.method) == inspect.signature(lambda _function, *, cls=1: None)
    assert await m.Adder.add(m.Adder(1), n=2) == 3


# ---- marking: outcomes on every loop ---------------------------------------------------------


def fails(error):
    return m.macro_fail(error)


def pending(probe):
    return m.pending_forever(probe)


@pytest.mark.anyio
async def test_results_exceptions_and_cancellation_pass_through_marked_functions():
    module = marked_module(fails=fails, pending=pending, echo=m.echo)
    assert await module.echo(SENTINEL) is SENTINEL
    for error in (KeyError("k"), m.PanicError("p"), ValueError()):
        with pytest.raises(type(error)) as raised:
            await module.fails(error)
        assert raised.value is error
    probe = m.Probe()
    async with anyio.create_task_group() as group:
        group.start_soon(module.pending, probe)
        await until(lambda: probe.polled > 0)
        group.cancel_scope.cancel()
    assert group.cancel_scope.cancelled_caught
    assert probe.dropped
    with anyio.CancelScope() as scope:
        scope.cancel()
        await module.pending(m.Probe())
    assert scope.cancelled_caught

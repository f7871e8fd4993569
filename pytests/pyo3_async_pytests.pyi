"""The pytest suite's extension module (pytests/src): small Rust futures and streams that
exercise each path of the bridge."""

import asyncio
import builtins
import collections.abc as abc
import types
from collections.abc import AsyncIterable, Awaitable, Callable, Generator, Sequence
from typing import Any, Literal, NoReturn, Protocol, TypeVar, final, overload, type_check_only

from typing_extensions import Self

__all__ = [
    "ready",
    "ready_by_pyo3",
    "panics_on_drop",
    "sleep",
    "from_thread",
    "tokio_noop",
    "yield_now",
    "fail",
    "panic",
    "pending_forever",
    "cleanup_on_cancel",
    "Probe",
    "block_on_latch",
    "Trigger",
    "WakerStash",
    "Latch",
    "count",
    "count_from_tokio",
    "count_suspending",
    "fail_after",
    "panic_after",
    "endless",
    "calls_back",
    "both",
    "await_py",
    "await_all",
    "await_in_sequence",
    "await_with_timeout",
    "await_outside_coroutine",
    "spawn_from_tokio",
    "spawn_with_from_tokio",
    "spawn_guarded_from_tokio",
    "drop_after",
    "collect_async_iter",
    "take_async_iter",
    "macro_sleep",
    "macro_renamed",
    "macro_fail",
    "macro_unit",
    "macro_trio_only",
    "macro_asyncio_only",
    "macro_block_on_latch",
    "macro_count",
    "macro_until_cancelled",
    "macro_module_name",
    "macro_pending",
    "Account",
    "traced",
    "traced_plain",
    "make_job",
    "Job",
    "forbidden_lints",
    "forbidden_lints_count",
    "eight",
    "ignores_its_argument",
    "span_at_call",
    "lookup",
    "make_result",
    "MacroResult",
    "checked_count",
    "through_renamed",
    "Renamed",
    "bare_module_name",
    "bare_count",
    "bare_until_cancelled",
    "Bare",
    "declarative",
    "Shapes",
    "marked_add",
    "unmarked_add",
    "marked_offset",
    "endpoint",
    "mark",
    "Adder",
    "local_count",
    "local_count_by_hand",
    "local_dropped",
    "Storm",
    "Coroutine",
    "AsyncGenerator",
    "wake_under_foreign_lock",
    "race_with_earlier_timer",
    "raise_stop_iteration",
    "stream_raising_stop",
    "stream_calls_on_drop",
    "stream_panics_on_drop",
    "spawn_with_context",
    "guarded_attach_works",
    "spawn_detached",
    "detached_outcomes",
    "tokio_sleep",
    "tokio_echo",
    "tokio_ticker",
    "spawned_ticker",
    "spawned_panic",
    "tokio_interval",
    "tokio_alive",
    "thread_states_kept",
    "tokio_ticks",
    "type",
    "keyword_only",
    "positional_only",
    "pooled_query",
    "pooled_rows",
    "cleaned_up",
    "context_leaks",
    "interrupt_and_fire",
    "use_pyo3_panics",
    "PanicError",
    "readme",
    "io_runtime_thread",
    "compute_runtime_thread",
    "aborted_task",
    "spawned_value",
    "init_runtime",
    "leave_task_at_exit",
    "leave_blocking_task_at_exit",
    "hold_exit_guard",
    "python_call_in_a_task_at_exit",
    "run_with_loop_factory",
    "run_seven",
    "TaskAbortedError",
    "sync_sleep",
    "sync_await_on",
    "sync_wait_forever",
    "loop_thread_block_on",
    "call_during_poll",
    "futures_dropped",
    "pyo3_async_stats",
    "parks_forever",
    "awaits_its_own_future",
    "keeps_its_own_waker",
    "delegate_to",
    "span_during_poll",
    "spans_in_generator",
    "echo",
    "relabelled",
    "relabelled_generator",
    "ForeignWaker",
    "Scripted",
]

_T = TypeVar("_T")

# `backend`: the loop the coroutine is bound to (any other name raises `ValueError`); `None`
# detects it with sniffio.
_Backend = Literal["asyncio", "trio"]

@type_check_only
class _Log(Protocol):
    """What the cancellation logs append to (a `list[str]`)."""

    def append(self, item: str, /) -> object: ...

@type_check_only
class _URL(Protocol):
    @property
    def path(self) -> str: ...

@type_check_only
class _Request(Protocol):
    """A Starlette request, as far as `endpoint` reads it."""

    @property
    def url(self) -> _URL: ...

# ---- pyo3_async's own classes ----

@final
class Coroutine(abc.Coroutine[Any, Any, Any]):
    """A Rust future as a Python coroutine object, driven by the Python event loop."""

    @property
    def __qualname__(self) -> str: ...  # type: ignore[override]
    @property
    def __name__(self) -> str: ...  # type: ignore[override]
    def __await__(self) -> Generator[Any, None, Any]:
        """The coroutine itself (it has `__next__`, `send` and `throw`)."""

    def __iter__(self) -> Coroutine:
        """The coroutine itself, its own `__await__` iterator (`yield from` takes it)."""

    def __next__(self) -> Any:
        """`send(None)`."""

    def send(self, value: Any) -> Any:
        """Resumes the coroutine; the event loop sends `None` (asyncio) or an outcome (trio)."""

    @overload
    def throw(
        self,
        typ: builtins.type[BaseException],
        val: BaseException | object = None,
        tb: types.TracebackType | None = None,
    ) -> Any: ...
    @overload
    def throw(
        self, typ: BaseException, val: None = None, tb: types.TracebackType | None = None
    ) -> Any: ...
    def close(self) -> None:
        """Drops the future: its cleanup runs now, synchronously."""

    @property
    def cr_running(self) -> bool:
        """Whether a `send`, `throw` or `close` of the coroutine runs right now."""

    @property
    def cr_suspended(self) -> bool:
        """Whether the coroutine was started and waits on its loop (3.11's `inspect` reads it)."""

    @property
    def cr_await(self) -> Any | None:
        """What the coroutine awaits: the awaitable it delegates to, or its parked future."""

    @property
    def cr_frame(self) -> types.FrameType | None:
        """A frame standing for the Rust function; `None` once finished."""

    @property
    def cr_code(self) -> types.CodeType:
        """The code object of `cr_frame`: named after the Rust function, in its file."""

    @property
    def cr_state(self) -> str:
        """`CORO_CREATED`, `CORO_RUNNING`, `CORO_SUSPENDED` or `CORO_CLOSED` (3.15's `inspect`)."""

    @property
    def cr_origin(self) -> None:
        """Where the coroutine was created: never recorded for Rust coroutines."""

@final
class AsyncGenerator(abc.AsyncGenerator[Any, None]):
    """A Rust stream as a Python async generator."""

    @property
    def __qualname__(self) -> str: ...  # type: ignore[override]
    @property
    def __name__(self) -> str: ...  # type: ignore[override]
    def __aiter__(self) -> Self: ...
    def __anext__(self) -> Coroutine:
        """A coroutine that polls the stream for one item."""

    def asend(self, value: None) -> Coroutine:
        """`asend(None)` is `__anext__()`: a Rust stream has no use for other values."""

    @overload
    def athrow(
        self,
        typ: builtins.type[BaseException],
        val: BaseException | object = None,
        tb: types.TracebackType | None = None,
    ) -> Coroutine: ...
    @overload
    def athrow(
        self, typ: BaseException, val: None = None, tb: types.TracebackType | None = None
    ) -> Coroutine: ...
    def aclose(self) -> Coroutine:
        """Ends the stream, dropping it when the returned awaitable runs."""

    @property
    def ag_running(self) -> bool:
        """Whether its stream is being polled right now."""

    @property
    def ag_suspended(self) -> bool:
        """Whether it was asked for an item, has not ended, and is not running."""

    @property
    def ag_state(self) -> str:
        """`AGEN_CREATED`, `AGEN_RUNNING`, `AGEN_SUSPENDED` or `AGEN_CLOSED` (3.15's `inspect`)."""

    @property
    def ag_frame(self) -> types.FrameType | None:
        """A frame standing for the Rust function; `None` once the stream has ended."""

    @property
    def ag_code(self) -> types.CodeType:
        """The code object of `ag_frame`: named after the Rust function, in its file."""

    @property
    def ag_await(self) -> None:
        """What its stream awaits is Rust's: always `None`."""

# ---- coroutines.rs ----

def ready(value: _T, backend: _Backend | None = None) -> abc.Coroutine[Any, Any, _T]:
    """Returns `value` at the first poll."""

def ready_by_pyo3(value: _T) -> abc.Coroutine[Any, Any, _T]:
    """As `ready`, made by PyO3's `Bound::new`: under abi3 in the base class until awaited."""

@overload
def sleep(
    seconds: float, value: None = None, backend: _Backend | None = None
) -> abc.Coroutine[Any, Any, None]:
    """Returns `value` after a tokio timer: the wake-up comes from a tokio worker thread."""

@overload
def sleep(seconds: float, value: _T, backend: _Backend | None = None) -> abc.Coroutine[Any, Any, _T]: ...
def tokio_noop() -> abc.Coroutine[Any, Any, None]:
    """Completes when an empty tokio task has run: a wake-up from a tokio worker, no timer."""

def from_thread(value: _T) -> abc.Coroutine[Any, Any, _T]:
    """Returns `value` once a plain OS thread, started at the first poll, completes a channel."""

def yield_now(times: int) -> abc.Coroutine[Any, Any, int]:
    """Wakes itself `times` times while being polled, then returns the number of polls."""

def fail(exception: BaseException, suspend: bool = True) -> abc.Coroutine[Any, Any, NoReturn]:
    """Raises `exception` (an instance), at once or after one suspension."""

def panic(message: str, suspend: bool = True) -> abc.Coroutine[Any, Any, None]:
    """Panics with `message` (returns if it is empty), at once or after one suspension."""

def panics_on_drop(ready: bool) -> abc.Coroutine[Any, Any, int]:
    """A coroutine over a future whose destructor panics (ready with 7, or pending forever)."""

@final
class Probe:
    """Records what happened to a Rust future or stream, for the test to check."""

    def __new__(cls) -> Self: ...
    @property
    def polled(self) -> int: ...
    @property
    def dropped(self) -> bool: ...
    @property
    def cleaned_up(self) -> bool: ...

def pending_forever(
    probe: Probe, backend: _Backend | None = None
) -> abc.Coroutine[Any, Any, NoReturn]:
    """Never completes; the probe tells whether it was polled and dropped."""

@overload
def cleanup_on_cancel(probe: Probe, result: None = None) -> abc.Coroutine[Any, Any, NoReturn]:
    """Waits for the cancellation, cleans up asynchronously, marks the probe and returns
    `result` (or raises the cancellation exception)."""

@overload
def cleanup_on_cancel(probe: Probe, result: _T) -> abc.Coroutine[Any, Any, _T]: ...

# ---- wakers.rs ----

@final
class Trigger:
    """A one-shot event fired from Python, on the loop thread or from another thread."""

    def __new__(cls) -> Self: ...
    def fire(self) -> None:
        """Fires in the calling thread: wakers run right here."""

    def fire_from_thread(self) -> None:
        """Fires from a new OS thread and waits for it, with the interpreter released."""

    @overload
    def wait(self, value: None = None, backend: _Backend | None = None) -> abc.Coroutine[Any, Any, None]:
        """Completes with `value` once fired."""

    @overload
    def wait(self, value: _T, backend: _Backend | None = None) -> abc.Coroutine[Any, Any, _T]: ...

@final
class WakerStash:
    """Keeps the waker of a pending future, to wake it later from anywhere."""

    def __new__(cls) -> Self: ...
    def wait(self, times: int, probe: Probe | None = None) -> abc.Coroutine[Any, Any, None]:
        """Pending until woken through the stash `times` times; `probe`, if given, sees the
        future dropped (the stash keeps the waker after that)."""

    @property
    def has_waker(self) -> bool: ...
    def wake_from_threads(self, times: int = 1, threads: int = 1) -> None:
        """Wakes the stashed waker `times` times from `threads` OS threads at once."""

    def wake(self) -> None:
        """Wakes the stashed waker in the calling thread."""

@final
class Latch:
    """A latch between a blocking Rust poll and a Python thread."""

    def __new__(cls) -> Self: ...
    def wait_blocked(self) -> None:
        """Waits, with the interpreter released, until a poll blocks on the latch."""

    def set(self) -> None:
        """Sets the latch."""

def interrupt_and_fire(trigger: Trigger) -> abc.Coroutine[Any, Any, None]:
    """Makes an interrupt pending, then fires `trigger` from the loop's thread."""

def block_on_latch(latch: Latch, timeout: float, allow_threads: bool) -> abc.Coroutine[Any, Any, bool]:
    """A poll that blocks its thread until the latch is set (at most `timeout` seconds);
    returns whether it was."""

# ---- generators.rs ----

def count(n: int, backend: _Backend | None = None) -> abc.AsyncGenerator[int, None]:
    """Yields 0..n, every item ready at once."""

def count_suspending(n: int) -> abc.AsyncGenerator[int, None]:
    """Yields 0..n, each item after one suspension."""

def count_from_tokio(n: int, allow_threads: bool = False) -> abc.AsyncGenerator[int, None]:
    """Yields 0..n, each item sent by a tokio task through a channel."""

def fail_after(k: int, exception: BaseException) -> abc.AsyncGenerator[int, None]:
    """Yields 0..k, then raises `exception`."""

def panic_after(k: int, message: str) -> abc.AsyncGenerator[int, None]:
    """Yields 0..k, then panics."""

def calls_back(callback: Callable[[], object]) -> abc.AsyncGenerator[object, None]:
    """Yields what `callback()` returns, called at each poll, until it returns `None`: a stream
    whose poll runs Python code that can reach back into its own generator."""

def endless(k: int, probe: Probe) -> abc.AsyncGenerator[int, None]:
    """Yields 0..k, then stays pending; the probe tells when the stream is dropped."""

# ---- awaiting.rs ----

def both(first: Trigger, second: Trigger) -> abc.Coroutine[Any, Any, Literal["both"]]:
    """Awaits both triggers inside one Rust future polled by one coroutine."""

def await_py(awaitable: Awaitable[_T]) -> abc.Coroutine[Any, Any, _T]:
    """Awaits a Python awaitable inside the coroutine (delegation) and returns its result."""

def await_all(awaitables: Sequence[Awaitable[_T]]) -> abc.Coroutine[Any, Any, list[_T]]:
    """Awaits several awaitables at once (a join): they run as tasks of the coroutine's loop."""

def await_in_sequence(awaitables: Sequence[Awaitable[int]]) -> abc.Coroutine[Any, Any, int]:
    """Awaits several awaitables one after the other, summing their (integer) results."""

def await_with_timeout(
    awaitable: Awaitable[_T], seconds: float, started: Trigger | None = None
) -> abc.Coroutine[Any, Any, _T | Literal["timeout"]]:
    """Awaits `awaitable` with a tokio timer racing it: returns `"timeout"` if the timer wins.
    With `started`, the timer starts once that trigger fires (the awaitable fires it when it
    runs): a timer that fired first would cancel an awaitable that never ran."""

def await_outside_coroutine(awaitable: Awaitable[_T]) -> _T:
    """Awaits a Python awaitable without a coroutine around it: a clear error."""

def spawn_from_tokio(awaitable: Awaitable[_T]) -> abc.Coroutine[Any, Any, _T]:
    """Schedules `awaitable` on the current loop from a tokio task and returns its result."""

def spawn_with_from_tokio(coroutine_function: Callable[[], Awaitable[_T]]) -> abc.Coroutine[Any, Any, _T]:
    """Like `spawn_from_tokio`, but `coroutine_function()` is called on the loop thread."""

def spawn_guarded_from_tokio(
    coroutine_function: Callable[[], Awaitable[_T]],
) -> abc.Coroutine[Any, Any, _T]:
    """Like `spawn_from_tokio`, attaching through `pyo3_async::attach_unless_exiting`."""

def drop_after(
    coroutine_function: Callable[[], Awaitable[object]], yields: int
) -> abc.Coroutine[Any, Any, bool]:
    """Spawns `coroutine_function()` and drops it after `yields` tokio yields; whether it
    finished first."""

def collect_async_iter(
    iterable: AsyncIterable[_T], capacity: int = 64, on_item: Callable[[_T], object] | None = None
) -> abc.Coroutine[Any, Any, list[_T]]:
    """Collects every item of a Python async iterable through `PyAsyncIter`, on tokio;
    `on_item(item)` is called on the tokio thread as each arrives."""

def take_async_iter(iterable: AsyncIterable[_T], n: int) -> abc.Coroutine[Any, Any, list[_T]]:
    """Takes `n` items of a Python async iterable through `PyAsyncIter`, then drops it."""

# ---- macros.rs ----

def macro_sleep(seconds: float, value: _T) -> abc.Coroutine[Any, Any, _T]:
    """Returns `value` (which may be `None`) after a tokio timer."""

def macro_renamed(a: int, b: int = 2) -> abc.Coroutine[Any, Any, int]:
    """`a + b` after a suspension (`OverflowError` on overflow)."""

def macro_fail(exception: BaseException) -> abc.Coroutine[Any, Any, NoReturn]:
    """Raises `exception` after a suspension."""

def macro_unit() -> abc.Coroutine[Any, Any, None]:
    """Returns `None` after a suspension."""

def macro_trio_only() -> abc.Coroutine[Any, Any, Literal["trio"]]:
    """Returns `"trio"` after a suspension; bound to trio."""

def macro_asyncio_only() -> abc.Coroutine[Any, Any, Literal["asyncio"]]:
    """Returns `"asyncio"` after a suspension; bound to asyncio."""

def macro_block_on_latch(latch: Latch, timeout: float) -> abc.Coroutine[Any, Any, bool]:
    """Blocks its poll on the latch (see `block_on_latch`), with the interpreter released."""

def macro_count(n: int) -> abc.AsyncGenerator[int, None]:
    """Yields 0..n, after a suspension."""

def macro_until_cancelled(log: _Log) -> abc.Coroutine[Any, Any, NoReturn]:
    """Waits for its cancellation, logs `"cancelled"`, and lets it through."""

def macro_module_name() -> abc.Coroutine[Any, Any, str]:
    """The name of the module that holds it, after a suspension."""

def macro_pending(probe: Probe) -> abc.Coroutine[Any, Any, NoReturn]:
    """Never completes; the probe tells when it is dropped."""

def keyword_only(a: int, *, key: int = 1) -> abc.Coroutine[Any, Any, int]:
    """PyO3's signature syntax in the macro's own options: keyword-only."""

def positional_only(a: int, /, b: int = 2) -> abc.Coroutine[Any, Any, int]:
    """Positional-only."""

def type(value: int) -> abc.Coroutine[Any, Any, int]:
    """A keyword as a name: Python sees `type`, and so does the coroutine's name."""

@final
class Account:
    """A bank account whose async methods borrow `&self` across suspensions."""

    def __new__(cls, balance: int) -> Self: ...
    @property
    def balance(self) -> int: ...
    def deposit(self, amount: int) -> abc.Coroutine[Any, Any, int]:
        """Adds `amount`; the new balance."""

    def withdraw(self, amount: int) -> abc.Coroutine[Any, Any, int]:
        """Takes `amount` off; the new balance (`ValueError` if insufficient)."""

    def hold(self, log: _Log) -> abc.Coroutine[Any, Any, NoReturn]:
        """Holds until cancelled (the handle is not a Python argument)."""

    def renamed_method(self, a: int, b: int = 2) -> abc.Coroutine[Any, Any, int]:
        """PyO3's method options, in `#[pyo3(...)]`: a name, a signature with a default."""

    def renamed_too(self, a: int, b: int = 3) -> abc.Coroutine[Any, Any, int]:
        """The same options in `#[pyo3_async(...)]`, and a text signature."""

    def ignores(self, unused: int) -> abc.Coroutine[Any, Any, int]:
        """Lint attributes reach the body they are about."""

    def __aenter__(self) -> abc.Coroutine[Any, Any, int]:
        """`async with account as same:` (a dunder: its hidden body must not warn)."""

    def __aexit__(self, _kind: object, _value: object, _traceback: object) -> abc.Coroutine[Any, Any, bool]: ...
    @staticmethod
    def bank() -> abc.Coroutine[Any, Any, Literal["trio bank"]]:
        """`"trio bank"`, on trio."""

# ---- macro_shapes.rs ----

def traced(value: int) -> abc.Coroutine[Any, Any, tuple[str | None, str | None, int]]:
    """Which span the body is in, before and after a suspension."""

def span_at_call() -> str | None:
    """`current_span()` where the coroutine is created: outside any span."""

def traced_plain(value: int) -> abc.Coroutine[Any, Any, str | None]:
    """Without a `name`, the span is named after the function, as on any `async fn`."""

def make_job() -> abc.Coroutine[Any, Any, Job]: ...
@final
class Job: ...

def forbidden_lints(value: int) -> abc.Coroutine[Any, Any, int]: ...
def forbidden_lints_count(n: int) -> abc.AsyncGenerator[int, None]: ...
def eight(a: int, b: int, c: int, d: int, e: int, f: int, g: int, h: int) -> abc.Coroutine[Any, Any, int]:
    """An expectation about a lint that fires in the wrapper (which has the same parameters) and
    in the body: met, on a function and on a method."""

def ignores_its_argument(unused: int) -> abc.Coroutine[Any, Any, int]:
    """An expectation about the body only (the wrapper moves the argument on): met."""

def lookup(key: str) -> abc.Coroutine[Any, Any, int]: ...
def make_result(value: int) -> abc.Coroutine[Any, Any, MacroResult]: ...
@final
class MacroResult:
    """A class named `Result`, which is no result: returned as a value."""

    @property
    def value(self) -> int: ...

def checked_count(n: int) -> abc.AsyncGenerator[int, None]:
    """A generator body that fails before it has a stream: raised by the first `__anext__`."""

def through_renamed(value: int) -> abc.Coroutine[Any, Any, int]: ...
@final
class Renamed:
    def __new__(cls) -> Self: ...
    def twice(self, value: int) -> abc.Coroutine[Any, Any, int]: ...

def bare_module_name() -> abc.Coroutine[Any, Any, str]: ...
def bare_count(n: int) -> abc.AsyncGenerator[int, None]: ...
def bare_until_cancelled() -> abc.Coroutine[Any, Any, NoReturn]: ...
@final
class Bare:
    def __new__(cls) -> Self: ...
    def ping(self) -> abc.Coroutine[Any, Any, int]: ...

declarative: types.ModuleType
"""PyO3's declarative module: `declared(value)` and `exported_elsewhere()`."""

@final
class Shapes:
    def __new__(cls, value: int) -> Self: ...
    def traced(self, extra: int) -> abc.Coroutine[Any, Any, tuple[str | None, int]]:
        """`skip(self)` names the body's `self`, which the wrapper does not have."""

    def traced_if(self) -> abc.Coroutine[Any, Any, str | None]:
        """The attribute under a condition reaches the body too."""

    def traced_plain_method(self, extra: int) -> abc.Coroutine[Any, Any, tuple[str | None, int]]:
        """Without a `name`, the span is named after the method."""

    def seven(self, a: int, b: int, c: int, d: int, e: int, f: int, g: int) -> abc.Coroutine[Any, Any, int]: ...
    def owned_self(self, extra: int) -> abc.Coroutine[Any, Any, int]:
        """The object owned by the coroutine (`Py<Self>`), instead of borrowed as `&self`."""

# ---- marked.rs ----
# Marked functions are coroutine functions for `inspect` on every Python: `async def` here.

async def marked_add(a: int, b: int = 2) -> int:
    """`a + b`, after a suspension; marked as a coroutine function."""

def unmarked_add(a: int, b: int = 2) -> abc.Coroutine[Any, Any, int]:
    """`a + b`, after a suspension; not marked."""

async def marked_offset(a: int, b: int = ...) -> int:
    """`a + b`, marked; `b` is -1 unless given (its text signature shows `b=...`)."""

async def endpoint(request: _Request) -> Any:
    """A Starlette endpoint in Rust: a `PlainTextResponse` naming the request's path."""

def mark(owner: object, names: Sequence[str]) -> None:
    """`pyo3_async::mark_coroutine_functions(owner, names)`, for the error cases."""

class PanicError(Exception):
    """A Rust future or stream panicked (`pyo3_async::PanicError`)."""

def use_pyo3_panics(yes: bool) -> None:
    """`pyo3_async::set_panic_style`: PyO3's `PanicException` when `yes`."""

@final
class Adder:
    def __new__(cls, base: int) -> Self: ...
    async def add(self, n: int) -> int:
        """`base + n`, marked."""

    def add_unmarked(self, n: int) -> abc.Coroutine[Any, Any, int]:
        """The same, unmarked."""

    @staticmethod
    async def version() -> str:
        """An async static method, marked."""

    @classmethod
    async def build(cls, base: int) -> Self:
        """A class method returning a coroutine, marked: an `Adder` of the class it is
        called on."""

# ---- local.rs ----

def local_count(n: int) -> abc.Coroutine[Any, Any, int]:
    """Counts to `n` in an `Rc<Cell<u32>>` kept across suspensions: the future is not `Send`."""

def local_count_by_hand(n: int) -> abc.Coroutine[Any, Any, int]:
    """The same, by hand (`Coroutine::local`)."""

def local_dropped() -> int:
    """How many `RcGuard`s were dropped (their destructors ran)."""

# ---- storm.rs ----

@final
class Storm:
    """Many futures woken at once from many threads, with spurious, repeated and late wakes."""

    def __new__(cls, n: int) -> Self: ...
    def wait(self, i: int, backend: _Backend | None = None) -> abc.Coroutine[Any, Any, int]:
        """Pending until slot `i` fires; returns `i`."""

    def fire_from_threads(self, threads: int, spurious: int, repeats: int) -> None:
        """Fires every slot from `threads` detached threads, with spurious and repeated wakes."""

    def completions(self) -> list[int]:
        """How many times each slot completed."""

# ---- core.rs ----

def wake_under_foreign_lock(trigger: Trigger, seconds: float) -> bool:
    """Fires `trigger` from a thread holding a foreign lock; whether this thread got the lock
    within `seconds`."""

def race_with_earlier_timer(
    awaitable: Awaitable[object], seconds: float
) -> abc.Coroutine[Any, Any, Literal["timer", "awaitable"]]:
    """Races `awaitable` against a tokio timer first polled in an earlier step."""

def raise_stop_iteration(value: object) -> abc.Coroutine[Any, Any, NoReturn]:
    """A future that fails with `StopIteration(value)`."""

def stream_raising_stop(sync: bool) -> abc.AsyncGenerator[int, None]:
    """A stream whose second item is a `StopAsyncIteration` error (or `StopIteration`)."""

def stream_calls_on_drop(
    items: int, ends: bool, on_drop: Callable[[], object]
) -> abc.AsyncGenerator[int, None]:
    """A stream of `items` items whose destructor calls `on_drop()` (never ending unless
    `ends`)."""
def stream_panics_on_drop(items: int, ends: bool) -> abc.AsyncGenerator[int, None]:
    """A stream of `items` items whose destructor panics (and which never ends unless `ends`)."""

def spawn_with_context(
    coroutine_function: Callable[[], Awaitable[_T]], capture: bool
) -> abc.Coroutine[Any, Any, _T]:
    """Runs `coroutine_function()` through `spawn_with` from a tokio thread, in this task's
    context if `capture`."""

def guarded_attach_works() -> bool:
    """Whether `pyo3_async::attach_unless_exiting` lets this thread in."""

# ---- shutdown.rs ----

def spawn_detached(coroutine_function: Callable[[], Awaitable[object]]) -> None:
    """Starts `coroutine_function()` on the running loop; a tokio task nobody awaits records
    its outcome."""

def detached_outcomes(count: int) -> list[str]:
    """Waits (at most 10 s) until `count` detached outcomes are recorded; returns and forgets
    them."""

# ---- with_tokio.rs ----

def tokio_sleep(seconds: float, value: _T) -> abc.Coroutine[Any, Any, _T]:
    """A tokio timer, polled by the Python loop inside the runtime's context; returns `value`."""

def tokio_echo(payload: bytes) -> abc.Coroutine[Any, Any, bytes]:
    """A `tokio::net` round trip on 127.0.0.1: a listener, a client, an echo."""

def tokio_ticker() -> abc.Coroutine[Any, Any, NoReturn]:
    """Ticks every millisecond on a tokio timer, for ever, owning an `Alive` guard."""

def spawned_ticker() -> abc.Coroutine[Any, Any, NoReturn]:
    """The same ticker as a task on tokio's workers, through `pyo3_async::tokio::spawn`."""

def spawned_panic() -> abc.Coroutine[Any, Any, NoReturn]:
    """A spawned task that panics: a `PanicError` for the awaiting Python code."""

def tokio_interval(count: int) -> abc.AsyncGenerator[int, None]:
    """Items from a tokio interval, as an async generator polled in the runtime's context."""

def thread_states_kept(
    local: Any,
) -> abc.Coroutine[Any, Any, tuple[tuple[bool, bool], bool, bool]]:
    """Thread states kept by foreign threads: an explicit `keep_thread_state` thread's
    `(kept, released)`, then whether a runtime worker and a blocking thread keep theirs."""

def tokio_alive() -> int:
    """How many `Alive` guards exist."""

def tokio_ticks() -> int:
    """How many ticks the tickers made."""

def pooled_query(complete: bool) -> abc.Coroutine[Any, Any, None]:
    """Holds a connection that spawns its return to the pool on tokio when dropped."""

def pooled_rows() -> abc.AsyncGenerator[int, None]:
    """The same, held by a generator between items."""

def cleaned_up() -> int:
    """How many pool returns ran."""

def context_leaks(var: Any, read: Callable[[Any], Awaitable[Any]], n: int) -> abc.Coroutine[Any, Any, int]:
    """`n` tasks on the default runtime's workers set `var` and read it back through the loop;
    how many saw another task's value."""

# ---- README.md (build.rs) ----

readme: types.ModuleType
"""The functions and classes the README's examples export (generated from README.md)."""

# ---- lifetime.rs ----

def io_runtime_thread() -> abc.Coroutine[Any, Any, str | None]:
    """Polled in the I/O runtime's context (the option names it): what `tokio::spawn` reaches
    runs on that runtime's threads, and its timers are that runtime's."""

def compute_runtime_thread() -> abc.Coroutine[Any, Any, str | None]:
    """A task on the compute runtime, by `spawn_on`."""

def aborted_task() -> abc.Coroutine[Any, Any, None]:
    """A task of the process-wide runtime, aborted while its handle is awaited."""

def spawned_value(value: _T) -> abc.Coroutine[Any, Any, _T]:
    """A value from a task of the process-wide runtime, after a tokio timer."""

def init_runtime() -> None:
    """`pyo3_async::tokio::init` with a default builder: its errors arrive as `RuntimeError`."""

def leave_task_at_exit(log: Callable[[str], object]) -> None:
    """Leaves a task of the process-wide runtime pending for ever, holding a guard that logs
    when dropped: the runtime's shutdown at exit drops it."""

def leave_blocking_task_at_exit(seconds: float, timeout: float) -> None:
    """Leaves a blocking task of the process-wide runtime sleeping for `seconds`, and bounds the
    wait for it at exit to `timeout` seconds."""

def hold_exit_guard(latch: Latch, timeout: float) -> None:
    """A thread that stays inside `attach_unless_exiting` (detached again, blocked on the latch)
    until the latch is set or `timeout` passes: exit waits for such threads."""

def python_call_in_a_task_at_exit(log: Callable[[str], object], seconds: float) -> None:
    """A task of the process-wide runtime that, in its poll, calls `time.sleep(seconds)` through
    `attach_unless_exiting` and then logs: a long poll that calls Python, as exit begins."""

def run_with_loop_factory(factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    """`pyo3_async::run_with` on asyncio, with `factory` as the loop factory."""

def run_seven(kind: str) -> int:
    """`pyo3_async::run` on a new `kind` loop ("asyncio", "uvloop" or "trio"): 7."""

class TaskAbortedError(Exception):
    """A tokio task awaited from Python was aborted by something other than its awaiter."""

def sync_sleep(seconds: float, value: _T) -> _T:
    """A blocking API over an async one: a tokio timer, waited for with the interpreter released."""

def sync_await_on(event_loop: asyncio.AbstractEventLoop, awaitable: Awaitable[_T]) -> _T:
    """Waits, from synchronous code, for `awaitable` run on `event_loop` (an asyncio loop running
    in another thread)."""

def sync_wait_forever(log: Callable[[str], object]) -> None:
    """Waits for ever for a future that logs when it is dropped (as Ctrl-C drops it)."""

def loop_thread_block_on(awaitable: Awaitable[_T]) -> _T:
    """`LoopThread::block_on(awaitable)` on a new asyncio loop thread, stopped after."""

# ---- machinery.rs ----

def call_during_poll(callback: Callable[[], _T]) -> abc.Coroutine[Any, Any, tuple[_T, _T]]:
    """Calls `callback()` inside the first poll, then again after a suspension; both results."""

# ---- native.rs ----

def futures_dropped() -> int:
    """How many futures of this module were dropped so far."""

def pyo3_async_stats() -> dict[str, int]:
    """What pyo3-async holds right now, as a dict (`pyo3_async::py_stats`)."""

def parks_forever() -> abc.Coroutine[Any, Any, None]:
    """Pending for ever, keeping no waker: once its task is forgotten, nothing can wake it."""

def awaits_its_own_future() -> abc.Coroutine[Any, Any, None]:
    """Pending for ever on a future of the running asyncio loop that only it holds."""

def keeps_its_own_waker() -> abc.Coroutine[Any, Any, None]:
    """Pending for ever with a waker it keeps in its own state: a root the collector cannot see."""

def delegate_to(awaitable: Awaitable[_T]) -> abc.Coroutine[Any, Any, _T]:
    """Awaits `awaitable` in its own task (delegation): what it awaits is `cr_await`."""

def span_during_poll() -> abc.Coroutine[
    Any, Any, tuple[tuple[str, dict[str, str]] | None, tuple[str, dict[str, str]] | None]
]:
    """The span its poll runs in, with its fields, before and after a suspension."""

def spans_in_generator(n: int) -> abc.AsyncGenerator[tuple[str, dict[str, str]], None]:
    """`n` items: the span each item's poll runs in (feature `tracing`)."""

def echo(value: _T) -> abc.Coroutine[Any, Any, _T]:
    """Returns its argument: the argument lives in the Rust future until the first poll."""

# Round-5 attack helpers (pytests/src/attack5.rs).
def relabelled(
    steps: Sequence[tuple[str, str]], payload: _T, fail: bool = False
) -> abc.Coroutine[Any, Any, _T]:
    """Labelled by `steps` ("static", "qualname", "source"), in order; suspends once, then
    returns `payload` or raises `KeyError(payload)`."""

def relabelled_generator(n: int, qualname: str) -> abc.AsyncGenerator[int, None]:
    """`0..n`, renamed with `with_qualname`."""

@final
class ForeignWaker:
    """Keeps a waker that a foreign thread wakes in a loop and drops, without the GIL."""

    def __new__(cls) -> Self: ...
    def wait(self, payload: object) -> abc.Coroutine[Any, Any, None]:
        """Pending for ever; `payload` lives in the future."""
    def start(self) -> None:
        """A thread takes the waker and wakes it in a loop until `stop`."""
    def stop(self) -> int:
        """Stops the thread, which drops the waker; how many wakes it made."""
    def drop_on_thread(self) -> bool:
        """Drops the kept waker on a new thread; whether there was one."""
    @property
    def has_waker(self) -> bool: ...

@final
class Scripted:
    """A future scripted poll by poll: what it does with the waker each poll lends it."""

    def __new__(cls) -> Self: ...
    def run(
        self,
        script: Sequence[tuple[Sequence[str], str]],
        payload: object = None,
        backend: str | None = None,
    ) -> abc.Coroutine[Any, Any, int]:
        """Poll i runs the actions of `script[i]` ("wake", "clone_wake", "clone_wake_ref",
        "clone_drop", "clone_clone_drop", "keep", "wake_kept", "wake_kept_by_value",
        "thread_wake", "thread_clone_wake", "thread_clone_drop", "threads_storm",
        "late_thread_wake", "late_thread_spin", "will_wake_kept"), then ends as its outcome
        says: "pending", "ready" (the number of polls), "panic" or "error" (ValueError). Past
        the script: ready."""
    def around_py(self, awaitable: abc.Awaitable[_T], actions: Sequence[str]) -> abc.Coroutine[Any, Any, _T]:
        """Runs `actions` on the first poll's waker, then polls `awaitable` (a `PyFuture`)."""
    def wake_kept(self) -> int:
        """Wakes the kept wakers by reference; how many."""
    def drop_kept(self) -> int:
        """Drops the kept wakers on another thread, without the GIL; how many."""
    def join(self) -> int:
        """Joins the late threads."""
    @property
    def polls(self) -> int: ...
    @property
    def kept_count(self) -> int: ...

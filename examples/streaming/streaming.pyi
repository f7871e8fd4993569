"""A Rust stream for Starlette's `StreamingResponse` (examples/streaming/src/lib.rs)."""

from collections.abc import AsyncGenerator, Callable

__all__ = ["ticks"]

def ticks(
    count: int | None = None,
    period: float = 0.01,
    on_close: Callable[[int], object] | None = None,
) -> AsyncGenerator[bytes, None]:
    """`b"tick 0\\n"`, `b"tick 1\\n"`, ... one every `period` seconds, `count` of them (or
    without end); `on_close(sent)` once the stream is dropped."""

"""The seed example (examples/seed/src/lib.rs): Rust futures and streams for asyncio and trio."""

import asyncio
import concurrent.futures
from collections.abc import AsyncGenerator
from typing import Any

__all__ = ["sleep_asyncio", "sleep_trio", "sleep_sniffio", "spawn_future", "count_asyncio", "count_trio"]

async def sleep_asyncio(seconds: int) -> None:
    """A tokio timer, on any loop."""

async def sleep_trio(seconds: int) -> None:
    """A tokio timer on trio, polled with the interpreter released."""

async def sleep_sniffio(seconds: int) -> None:
    """A tokio timer, on the loop sniffio detects."""

def spawn_future(fut: asyncio.Future[Any] | concurrent.futures.Future[Any]) -> None:
    """A tokio task awaits `fut` and prints "task done" once it is."""

def count_asyncio(until: int, tick: int) -> AsyncGenerator[int, None]:
    """0, 1, ... `until - 1`, one every `tick` seconds, on asyncio."""

def count_trio(until: int, tick: int) -> AsyncGenerator[int, None]:
    """The same, on trio."""

"""The README's Rust examples, compiled into the test module (`pytests/build.rs`) and called
here on every loop: each function and class they export is run, not only compiled."""

import inspect

import anyio
import pytest

from pyo3_async_pytests import readme

pytestmark = pytest.mark.anyio


def test_every_export_is_covered():
    exported = {name for name in dir(readme) if not name.startswith("_")}
    covered = {name for name in globals() if name.startswith("test_")}
    missing = {name for name in exported if f"test_{name.lower()}" not in covered}
    assert not missing, f"README examples without a test here: {sorted(missing)}"


async def test_sleep(loop_name):
    assert await readme.sleep(0) is None


async def test_sleep_trio(loop_name):
    if loop_name == "trio":
        assert await readme.sleep_trio(0) == 0
    else:
        # Fixed to trio: on another loop, trio's own check refuses it when it suspends.
        with pytest.raises(RuntimeError, match="async context"):
            await readme.sleep_trio(1)


async def test_count(loop_name):
    assert [i async for i in readme.count(3)] == [0, 1, 2]


async def test_client(loop_name):
    client = readme.Client("https://example.com")
    assert await client.url_length() == len("https://example.com")


async def test_double(loop_name):
    async def twenty_one():
        await anyio.sleep(0)
        return 21

    assert await readme.double(twenty_one()) == 42


async def test_in_background(loop_name):
    called = anyio.Event()

    async def make():
        called.set()

    readme.in_background(make)
    with anyio.fail_after(10):
        await called.wait()


async def test_nap(loop_name):
    assert await readme.nap(0.001) == 0.001


async def test_checksum(loop_name):
    assert await readme.checksum(bytes([1, 2, 250])) == 253


def test_the_functions_return_coroutines():
    coroutine = readme.sleep(0)
    assert inspect.isawaitable(coroutine)
    assert coroutine.__qualname__ == "sleep"
    coroutine.close()

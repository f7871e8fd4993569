"""`#[pyo3_async::pyfunction]` and `#[pyo3_async::pymethods]`: async fn as coroutine functions."""

import asyncio
import inspect
import threading

import anyio
import pytest

import pyo3_async_pytests as m

pytestmark = pytest.mark.anyio


class Custom(Exception):
    pass


async def test_function_returns_a_named_coroutine():
    coroutine = m.macro_sleep(0.001, "value")
    assert asyncio.iscoroutine(coroutine)
    assert coroutine.__name__ == "macro_sleep"
    assert coroutine.__qualname__ == "macro_sleep"
    assert await coroutine == "value"


async def test_task_repr_shows_the_function(loop_name):
    if loop_name == "trio":
        pytest.skip("asyncio repr")
    task = asyncio.create_task(m.macro_sleep(0.001, None))
    assert "macro_sleep" in repr(task)
    await task


def test_wrong_argument_raises_at_call_time():
    with pytest.raises(TypeError):
        m.macro_sleep("not a number")
    with pytest.raises(TypeError):
        m.macro_renamed()


async def test_pyo3_options_pass_through():
    assert m.macro_renamed.__name__ == "macro_renamed"
    assert await m.macro_renamed(1) == 3
    assert await m.macro_renamed(1, b=5) == 6
    coroutine = m.macro_renamed(1)
    assert coroutine.__name__ == "macro_renamed"
    coroutine.close()


async def test_results_errors_and_unit():
    assert await m.macro_unit() is None
    error = Custom("raised")
    with pytest.raises(Custom) as raised:
        await m.macro_fail(error)
    assert raised.value is error
    with pytest.raises(OverflowError):
        await m.macro_renamed(2**62, 2**62)


async def test_backend_option(loop_name):
    if loop_name == "trio":
        assert await m.macro_trio_only() == "trio"
        with pytest.raises(RuntimeError):
            await m.macro_asyncio_only()
    else:
        assert await m.macro_asyncio_only() == "asyncio"
        with pytest.raises(RuntimeError):
            await m.macro_trio_only()


async def test_allow_threads_option():
    latch = m.Latch()

    def release():
        latch.wait_blocked()
        latch.set()

    thread = threading.Thread(target=release)
    thread.start()
    assert await m.macro_block_on_latch(latch, 30)
    thread.join()


async def test_generator_option():
    generator = m.macro_count(4)
    assert [i async for i in generator] == [0, 1, 2, 3]


async def test_pass_module_option():
    assert (await m.macro_module_name()).endswith("pyo3_async_pytests")


async def test_cancellation_drops_the_body():
    probe = m.Probe()
    with anyio.move_on_after(0.01) as scope:
        await m.macro_pending(probe)
    assert scope.cancelled_caught
    assert probe.dropped


async def test_cancel_handle_parameter():
    log = []
    with anyio.move_on_after(0.01) as scope:
        await m.macro_until_cancelled(log)
    assert scope.cancelled_caught
    assert log == ["cancelled"]
    account = m.Account(0)
    with anyio.move_on_after(0.01) as scope:
        await account.hold(log)
    assert scope.cancelled_caught
    assert log == ["cancelled", "held until cancelled"]
    # The handle is not an argument.
    with pytest.raises(TypeError):
        m.macro_until_cancelled()
    with pytest.raises(TypeError):
        m.macro_until_cancelled(log, None)


async def test_methods_borrow_self_across_suspensions():
    account = m.Account(10)
    assert await account.deposit(5) == 15
    assert account.balance == 15
    assert await account.withdraw(3) == 12
    with pytest.raises(ValueError, match="insufficient"):
        await account.withdraw(100)
    assert account.balance == 12
    deposit = account.deposit(1)
    assert deposit.__qualname__ == "Account.deposit"
    assert deposit.__name__ == "deposit"
    assert await deposit == 13


async def test_methods_run_concurrently():
    account = m.Account(0)
    async with anyio.create_task_group() as group:
        for _ in range(100):
            group.start_soon(account.deposit, 1)
    assert account.balance == 100


async def test_static_method_with_backend_option(loop_name):
    if loop_name == "trio":
        assert await m.Account.bank() == "trio bank"
    else:
        with pytest.raises(RuntimeError):
            await m.Account.bank()


async def test_exceptions_show_the_rust_function_in_tracebacks():
    import traceback

    error = Custom("located")
    with pytest.raises(Custom) as raised:
        await m.macro_fail(error)
    assert raised.value is error
    frames = traceback.extract_tb(raised.value.__traceback__)
    assert frames[-1].name == "macro_fail"
    assert frames[-1].filename.endswith("pytests/src/macros.rs")
    with pytest.raises(ValueError) as raised:
        await m.Account(0).withdraw(1)
    assert traceback.extract_tb(raised.value.__traceback__)[-1].name == "withdraw"


@pytest.mark.anyio
async def test_pyo3_method_options_reach_pyo3_in_either_attribute():
    # `#[pyo3(name, signature)]` and `#[pyo3_async(name, signature, text_signature)]` on an
    # async method: Python sees the name, the defaults and the text signature written.
    account = m.Account(0)
    assert not hasattr(m.Account, "original_method")
    assert not hasattr(m.Account, "original_too")
    assert str(inspect.signature(m.Account.renamed_method)) == "(self, /, a, b=2)"
    assert m.Account.renamed_too.__text_signature__ == "($self, a, b=3)"
    assert await account.renamed_method(40) == 42
    assert await account.renamed_too(40) == 43
    assert m.Account.renamed_too.__name__ == "renamed_too"


@pytest.mark.anyio
async def test_async_dunders_make_an_async_context_manager():
    async with m.Account(7) as balance:
        assert balance == 7


@pytest.mark.anyio
async def test_a_raw_identifier_is_named_without_its_prefix():
    export = getattr(m, "type")
    coroutine = export(7)
    assert (coroutine.__name__, coroutine.__qualname__) == ("type", "type")
    assert await coroutine == 7
    assert await m.Account(0).ignores(5) == 1
    assert not hasattr(m.Account, "never")


@pytest.mark.anyio
async def test_signature_options_take_pyo3s_whole_syntax():
    assert str(inspect.signature(m.keyword_only)) == "(a, *, key=1)"
    assert str(inspect.signature(m.positional_only)) == "(a, /, b=2)"
    assert await m.keyword_only(1, key=2) == 3
    assert await m.positional_only(1) == 3
    with pytest.raises(TypeError):
        m.keyword_only(1, 2)
    with pytest.raises(TypeError):
        m.positional_only(a=1)

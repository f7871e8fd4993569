"""`anext(agen, default)` over generators whose steps suspend: Rust's against native ones.

CPython's `anext(agen, default)` wraps the generator's step in an awaitable of its own, which
asks the step for `__await__` again at each resumption (`send` and `throw` alike). A native
generator's step returns itself each time; a Rust generator's does too, until it finished.
A plain Rust coroutine still refuses a second `await` (test_attack_round4.py,
test_attack_perf.py), as Python's `await` refuses a native one.
"""

import anyio
import anyio.lowlevel
import pytest

import pyo3_async_pytests as m
from helpers import native_fail_after


async def native_count_suspending(n):
    for i in range(n):
        await anyio.lowlevel.checkpoint()
        yield i


async def native_endless(k, probe):
    for i in range(k):
        yield i
    await anyio.sleep_forever()


COUNT = {"native": native_count_suspending, "rust": m.count_suspending}
FAIL_AFTER = {"native": native_fail_after, "rust": m.fail_after}
KINDS = ["native", "rust"]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_items_then_the_default(kind):
    agen = COUNT[kind](3)
    assert [await anext(agen, "end") for _ in range(5)] == [0, 1, 2, "end", "end"]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_an_exception_after_a_suspension_keeps_its_type(kind):
    agen = FAIL_AFTER[kind](1, KeyError("k"))
    assert await anext(agen, "end") == 0
    with pytest.raises(KeyError):
        await anext(agen, "end")
    # The exception ended the generator: the default from now on.
    assert await anext(agen, "end") == "end"


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_async_for_and_anext_with_a_default_take_turns(kind):
    agen = COUNT[kind](4)
    seen = []
    async for item in agen:
        seen.append(item)
        seen.append(await anext(agen, "end"))
    assert seen == [0, 1, 2, 3]
    assert await anext(agen, "end") == "end"


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_cancelled_while_suspended_ends_the_generator(kind):
    # The cancellation is thrown into `anext`'s awaitable, which asks the suspended step for
    # `__await__` once more and throws it there.
    probe = m.Probe()
    agen = m.endless(1, probe) if kind == "rust" else native_endless(1, probe)
    assert await anext(agen, "end") == 0
    with anyio.move_on_after(0.01) as scope:
        await anext(agen, "end")
    assert scope.cancelled_caught
    assert await anext(agen, "end") == "end"
    if kind == "rust":
        assert probe.dropped


@pytest.mark.anyio
async def test_a_step_stays_awaitable_until_it_finished():
    step = m.count_suspending(1).__anext__()
    assert step.__await__() is step
    assert step.__await__() is step
    assert await step == 0
    with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
        await step


async def two_tasks_await_one_step(agen):
    step = agen.__anext__()
    outcomes = []

    async def awaiter():
        try:
            outcomes.append(await step)
        except Exception as error:  # noqa: BLE001 (the outcome is the exception's type)
            outcomes.append(type(error))

    async with anyio.create_task_group() as group:
        group.start_soon(awaiter)
        group.start_soon(awaiter)
    try:
        rest = [item async for item in agen]
    except Exception as error:  # noqa: BLE001
        rest = type(error)
    return outcomes, rest


@pytest.mark.anyio
async def test_a_step_awaited_by_two_tasks_does_what_a_native_one_does():
    # Both tasks drive the step, as with a native one: on asyncio the first gets the item and
    # the second "cannot reuse"; on trio the second resumes the first's checkpoint with a
    # value trio did not send (AttributeError, as natively), and the generator ends.
    native = await two_tasks_await_one_step(native_count_suspending(2))
    rust = await two_tasks_await_one_step(m.count_suspending(2))
    assert rust == native
    assert RuntimeError in rust[0]

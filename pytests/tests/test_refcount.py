"""Reference counts across `await` and `async for`, which the abi3 build writes inline
(src/refcount.rs): every count taken is given back, immortal objects stay as they are, and
the last reference frees its object (at once, without the collector).
"""

import gc
import sys
import weakref

import pytest

import pyo3_async_pytests as m


class Box:
    """A plain object: counted, and freed when its last reference goes."""


MAKERS = [pytest.param(m.echo, id="async-fn"), pytest.param(m.ready, id="coroutine-new")]
# `None` is immortal from 3.12; before, the loop's own work moves its count meanwhile.
SHARED = pytest.mark.skipif(sys.version_info < (3, 12), reason="None is mortal before 3.12")
RESULTS = [
    pytest.param(lambda: Box(), id="object"),
    pytest.param(lambda: None, id="None", marks=SHARED),
    pytest.param(lambda: 1, id="small-int"),
    pytest.param(lambda: True, id="True"),
    pytest.param(lambda: 10**30, id="big-int"),
    pytest.param(lambda: ("a", Box()), id="tuple"),
    pytest.param(lambda: ValueError("v"), id="exception"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("result", RESULTS)
async def test_awaits_give_back_every_count(make, result):
    value = result()
    first = make(value)
    assert await first is value
    # Under abi3 `await` moves a coroutine into a subclass: both classes are counted.
    classes = (m.Coroutine, type(first))
    del first

    def counts():
        return [sys.getrefcount(value)] + [sys.getrefcount(c) for c in classes]

    before = counts()
    for _ in range(1000):
        assert await make(value) is value
    assert counts() == before


@pytest.mark.anyio
@pytest.mark.parametrize("result", RESULTS)
async def test_stream_items_give_back_every_count(result):
    value = result()
    if value is None:
        pytest.skip("`calls_back` ends its stream at None")
    before = sys.getrefcount(value)
    remaining = [1000]

    def next_item():
        if remaining[0] == 0:
            return None
        remaining[0] -= 1
        return value

    async for item in m.calls_back(next_item):
        assert item is value
    del item
    assert sys.getrefcount(value) == before


@pytest.mark.anyio
@pytest.mark.parametrize("make", MAKERS)
async def test_the_last_reference_frees_a_result(make):
    gc.disable()  # freed by its count alone, not by the collector
    try:
        for _ in range(3):
            box = Box()
            freed = weakref.ref(box)
            assert await make(box) is box
            del box
            assert freed() is None
    finally:
        gc.enable()


@pytest.mark.anyio
async def test_the_last_reference_frees_a_coroutine():
    gc.disable()
    try:
        coroutine = m.echo(1)
        freed = weakref.ref(coroutine)
        assert await coroutine == 1
        del coroutine
        assert freed() is None
    finally:
        gc.enable()


class Finalised:
    """A callable that records its own finalisation."""

    def __init__(self, log):
        self.log = log

    def __call__(self):
        return 1

    def __del__(self):
        self.log.append("finalised")


@pytest.mark.anyio
async def test_a_reference_dropped_in_a_step_is_released_in_that_step():
    # The last step drops the future, and with it the only reference to the callable. The
    # slot that ran the step counts its attach with PyO3 (src/rust_to_py/slot_entry.rs): a
    # reference dropped where PyO3 counts no attach would wait in PyO3's queue for the next
    # one, and the callable would outlive the `await`.
    log = []
    coroutine = m.call_during_poll(Finalised(log))
    assert await coroutine == (1, 1)
    log.append("returned")
    assert log == ["finalised", "returned"]

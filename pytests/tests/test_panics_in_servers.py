"""A panic in one request costs that request only (`pyo3_async::PanicError`, an `Exception`),
on uvicorn (asyncio, uvloop), hypercorn (trio, asyncio, uvloop) and a bare anyio task group."""

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import pyo3_async_pytests as m
from helpers import load_streaming_example

serve = load_streaming_example("streaming_serve_panics")

pytestmark = pytest.mark.anyio

LIMIT = 20


def make_app():
    async def panics(request):
        await m.panic("handler bug", True)
        return PlainTextResponse("unreachable")

    async def works(request):
        return PlainTextResponse(await m.sleep(0.001, "fine"))

    return Starlette(routes=[Route("/panics", panics), Route("/works", works)])


@pytest.fixture(params=["uvicorn", "hypercorn"])
def server(request, loop_name):
    if request.param == "uvicorn" and loop_name == "trio":
        pytest.skip("uvicorn serves on asyncio only")
    return request.param


async def test_a_panicking_handler_costs_its_request_only(server):
    with anyio.fail_after(LIMIT):
        async with serve.running(make_app(), server) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                for _ in range(3):
                    assert (await client.get("/panics")).status_code == 500
                    response = await client.get("/works")
                    assert (response.status_code, response.text) == (200, "fine")


async def test_a_panic_in_a_task_group_is_caught_like_any_exception(loop_name):
    handled = []

    async def handler(i):
        try:
            await m.panic(f"request {i}", i % 2 == 0)
        except Exception as error:  # a framework's error handling
            handled.append((type(error), error.args))

    async def survivor():
        await m.sleep(0.001, None)
        handled.append("survived")

    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tasks:
            for i in range(4):
                tasks.start_soon(handler, i)
            tasks.start_soon(survivor)
    assert sorted(map(str, handled)) == sorted(
        map(str, [(m.PanicError, (f"request {i}",)) for i in range(4)] + ["survived"])
    )


async def test_an_unhandled_panic_fails_its_task_group_as_an_exception(loop_name):
    with pytest.raises(BaseException) as raised:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(m.panic, "unhandled", True)
    # An `ExceptionGroup` (not a `BaseExceptionGroup`): `except* Exception` handles it.
    group = raised.value
    assert isinstance(group, Exception), repr(group)
    assert [type(error) for error in group.exceptions] == [m.PanicError]

"""Every `@pytest.mark.anyio` test runs on asyncio, uvloop and trio (ids show the loop)."""

import signal

import pytest

# A shell that starts the suite in the background (`make test &`, nohup) makes it ignore
# SIGINT, and Python then installs no KeyboardInterrupt handler: the tests that interrupt
# themselves with SIGINT would wait for ever. They need Python's default handler.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request):
    return request.param


@pytest.fixture
def loop_name(anyio_backend):
    """'asyncio', 'uvloop' or 'trio'."""
    if isinstance(anyio_backend, tuple):
        return "uvloop"
    return anyio_backend

"""Every `@pytest.mark.anyio` test runs on asyncio, uvloop and trio (ids show the loop)."""

import pytest


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

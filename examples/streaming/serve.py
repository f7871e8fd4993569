"""A Rust stream as a Starlette response body: served by uvicorn (asyncio, uvloop) or hypercorn
(trio, asyncio) on 127.0.0.1, fetched by httpx in the same process.

    python examples/streaming/serve.py      # on asyncio, uvloop and trio, in turn

Build the module first: `maturin develop -m examples/streaming/Cargo.toml`. The test suite runs
this example (`pytests/tests/test_real_clients.py`) and reuses `make_app` and `running`.
"""

import gc
import socket
import sys
from contextlib import asynccontextmanager

import anyio
import httpx
import sniffio
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

import streaming  # the Rust module (src/lib.rs)


def make_app(on_close=None):
    """`GET /ticks?count=N`: a text body streamed from `streaming.ticks` (without end if no
    `count`). `on_close(sent)` learns when the server dropped each Rust stream."""

    async def ticks(request):
        count = request.query_params.get("count")
        lines = streaming.ticks(int(count) if count else None, 0.01, on_close)
        return StreamingResponse(lines, media_type="text/plain")

    return Starlette(routes=[Route("/ticks", ticks)])


class Handlers:
    """An ASGI wrapper around `app`: `done` is set once `expected` requests have returned.

    After a hang-up, a server's failed send travels through Starlette's task group as an
    exception group, and its traceback keeps the response (and so the Rust stream) in a
    reference cycle that only the garbage collector frees: once the handlers have returned,
    `collect()` frees what they left."""

    def __init__(self, app, expected):
        self.app = app
        self.expected = expected
        self.returned = 0
        self.done = anyio.Event()

    async def __call__(self, scope, receive, send):
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                self.returned += 1
                if self.returned == self.expected:
                    self.done.set()

    async def collect(self):
        """Waits for the handlers, then frees the cycles they left."""
        await self.done.wait()
        gc.collect()


def listening_socket():
    """A socket on 127.0.0.1 with a free port, listening already: a client may connect before
    the server accepts, so nothing waits for the server to be ready."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


@asynccontextmanager
async def running(app, server):
    """Serves `app` with `server` ("uvicorn" or "hypercorn") while the block runs; yields the
    base URL. Leaving the block shuts the server down gracefully."""
    sock = listening_socket()
    host, port = sock.getsockname()
    async with anyio.create_task_group() as tasks:
        stop = _serve(tasks, app, server, sock)
        try:
            yield f"http://{host}:{port}"
        finally:
            stop()


def _serve(tasks, app, server, sock):
    """Starts serving in `tasks`; returns what stops it."""
    if server == "uvicorn":
        return _serve_uvicorn(tasks, app, sock)
    if server == "hypercorn":
        return _serve_hypercorn(tasks, app, sock)
    raise ValueError(f"unknown server {server!r}")


def _serve_uvicorn(tasks, app, sock):
    import uvicorn

    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
    instance = uvicorn.Server(config)
    tasks.start_soon(instance.serve, [sock])

    def stop():
        instance.should_exit = True

    return stop


def _serve_hypercorn(tasks, app, sock):
    from hypercorn.asyncio import serve as serve_asyncio
    from hypercorn.config import Config
    from hypercorn.trio import serve as serve_trio

    serve = serve_trio if sniffio.current_async_library() == "trio" else serve_asyncio
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = config.errorlog = None
    stopped = anyio.Event()
    tasks.start_soon(lambda: serve(app, config, shutdown_trigger=stopped.wait))
    return stopped.set


class Closed:
    """An `on_close`: the lines each dropped stream sent, and an event once `expected` went."""

    def __init__(self, expected):
        self.sent = []
        self.expected = expected
        self.all = anyio.Event()

    def __call__(self, sent):
        self.sent.append(sent)
        if len(self.sent) == self.expected:
            self.all.set()


async def demo(server):
    """Five ticks in full, then a client that hangs up after three lines of an endless body."""
    closed = Closed(expected=2)
    app = Handlers(make_app(closed), expected=2)
    async with running(app, server) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/ticks", params={"count": 5})
            print(f"  GET /ticks?count=5 -> {response.status_code}, {response.text.splitlines()!r}")
            async with client.stream("GET", "/ticks") as response:
                lines = []
                async for line in response.aiter_lines():
                    lines.append(line)
                    if len(lines) == 3:
                        break  # hang up: leaving the block closes the connection
            print(f"  GET /ticks (endless) -> read {lines!r}, hung up")
        # The server notices at its next write and drops the body: the Rust stream goes.
        with anyio.fail_after(5):
            await app.collect()
            await closed.all.wait()
    print(f"  the server dropped its Rust streams after {closed.sent} lines")
    return closed.sent


def main():
    import uvloop

    for name, backend, options, server in [
        ("asyncio", "asyncio", {}, "uvicorn"),
        ("uvloop", "asyncio", {"loop_factory": uvloop.new_event_loop}, "uvicorn"),
        ("trio", "trio", {}, "hypercorn"),
    ]:
        print(f"{server} on {name}:")
        anyio.run(demo, server, backend=backend, backend_options=options)


if __name__ == "__main__":
    sys.exit(main())

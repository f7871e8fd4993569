"""An HTTP site for tests/real_clients.rs: a raw ASGI app served by uvicorn (asyncio, uvloop)
or hypercorn (trio) on 127.0.0.1, and the httpx clients that Rust tasks send requests through.

Everything here runs on the loop thread; Rust waits for the milestones through `wait_*`."""

import socket

import anyio
import httpx
import sniffio

#: No wait in here lasts longer: a lost request fails the test instead of hanging it.
LIMIT = 30


class Site:
    """`/fast` answers at once; `/park` holds its request until the client hangs up.

    Counts what the server parked and released, and the client requests cancelled."""

    def __init__(self, parked_target, cancelled_target):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        self.sock = sock
        host, port = sock.getsockname()
        self.url = f"http://{host}:{port}"
        # Fast and parked requests go through clients of their own: parked requests hold their
        # connection and must not keep fast ones waiting for one. Each kind is spread over
        # several clients, as httpx's pool slows down with the requests queued in it. No
        # timeouts of httpx's own: requests wait as long as the test lets them (`LIMIT`).
        self.fast = [httpx.AsyncClient(base_url=self.url, timeout=None) for _ in range(10)]
        limits = httpx.Limits(max_connections=parked_target // 4)
        self.slow = [
            httpx.AsyncClient(base_url=self.url, timeout=None, limits=limits) for _ in range(4)
        ]
        self.parked = self.released = self.cancelled = 0
        #: Requests under way, and those that ended neither answered nor cancelled: the
        #: timeout's message tells a lost cancellation from a miscount.
        self.in_flight = 0
        self.failed = []
        self.parked_target = parked_target
        self.cancelled_target = cancelled_target
        self.all_parked = anyio.Event()
        self.all_released = anyio.Event()
        self.all_cancelled = anyio.Event()
        self.stopped = anyio.Event()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/fast":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        self.parked += 1
        if self.parked == self.parked_target:
            self.all_parked.set()
        while (await receive())["type"] != "http.disconnect":
            pass
        self.released += 1
        if self.released == self.parked_target:
            self.all_released.set()

    async def serve(self):
        """Runs the server until `stop`: scheduled by Rust as a task of the loop."""
        if sniffio.current_async_library() == "trio":
            from hypercorn.config import Config
            from hypercorn.trio import serve

            config = Config()
            config.bind = [f"fd://{self.sock.detach()}"]
            config.accesslog = config.errorlog = None
            await serve(self, config, shutdown_trigger=self.stopped.wait)
        else:
            import uvicorn

            config = uvicorn.Config(self, lifespan="off", log_config=None, access_log=False)
            server = uvicorn.Server(config)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(server.serve, [self.sock])
                await self.stopped.wait()
                server.should_exit = True

    async def get(self, path, i):
        """Request `i` of its kind, as the Rust tasks send it: the response's status, or the
        cancellation counted on its way out."""
        clients = self.fast if path == "/fast" else self.slow
        client = clients[i % len(clients)]
        self.in_flight += 1
        try:
            response = await client.get(path)
        except BaseException as exc:
            if is_cancellation(exc):
                self.cancelled += 1
                if self.cancelled == self.cancelled_target:
                    self.all_cancelled.set()
            else:
                self.failed.append(repr(exc))
            raise
        finally:
            self.in_flight -= 1
        return response.status_code

    async def wait_parked(self):
        with anyio.fail_after(LIMIT):
            await self.all_parked.wait()

    async def wait_cancelled(self):
        try:
            with anyio.fail_after(LIMIT):
                await self.all_cancelled.wait()
                await self.all_released.wait()
        except TimeoutError:
            raise TimeoutError(
                f"{self.cancelled} of {self.cancelled_target} requests cancelled, "
                f"{self.released} of {self.parked_target} parked ones released, "
                f"{self.in_flight} still under way, failed: {self.failed[:3]}"
            ) from None

    async def stop(self):
        for client in self.fast + self.slow:
            await client.aclose()
        self.stopped.set()


def is_cancellation(exc):
    """Whether `exc` is the loop's cancellation, bare or in a group of nothing else. On trio, a
    cancellation that lands while httpcore connects leaves `trio.open_tcp_stream`'s
    happy-eyeballs nursery as `BaseExceptionGroup([Cancelled, ...])`: a queued request handed
    the connection that a cancelled one freed, whose own cancel arrives a drain later."""
    cancelled = anyio.get_cancelled_exc_class()
    if isinstance(exc, cancelled):
        return True
    if not hasattr(exc, "split"):  # not a group (builtin from 3.11; `exceptiongroup` on 3.10)
        return False
    matched, rest = exc.split(cancelled)
    return matched is not None and rest is None


async def open_site(parked_target, cancelled_target):
    """A `Site`, made on the loop (its events belong to the loop's library)."""
    return Site(parked_target, cancelled_target)

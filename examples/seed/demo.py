"""The seed's demo: Rust futures and streams awaited from asyncio and from trio.

Each line shows the time since the start, so the seed's timings can be checked.
"""

import asyncio
import time

import trio

import example  # built with maturin (`make demo`)

START = time.monotonic()


def log(*args):
    print(f"[{time.monotonic() - START:4.1f}s]", *args, flush=True)


async def asyncio_main():
    await example.sleep_asyncio(1)
    log("sleep_asyncio(1) done")  # sleep 1s
    await example.sleep_sniffio(1)
    log("sleep_sniffio(1) done")  # sleep 1s
    example.spawn_future(asyncio.create_task(asyncio.sleep(1)))
    await asyncio.sleep(2)  # "task done" is printed by a tokio task after 1s
    log("slept 2s")
    async for i in example.count_asyncio(2, 1):
        log(i)  # sleep 1s, print 0; sleep 1s, print 1


async def trio_run():
    await example.sleep_trio(1)
    log("sleep_trio(1) done")  # sleep 1s
    await example.sleep_sniffio(1)
    log("sleep_sniffio(1) done")  # sleep 1s
    async for i in example.count_trio(2, 1):
        log(i)  # sleep 1s, print 0; sleep 1s, print 1


asyncio.run(asyncio_main())
print("======================")
START = time.monotonic()
trio.run(trio_run)

"""Rust awaitables still suspended when the interpreter exits: finalisation closes them, on
the full and the abi3 build (whose `await` goes through a wrapper type with slots of its own),
and the process exits cleanly, never aborting. Each case runs in a subprocess."""


import pytest

from helpers import run_script

LOOPS = {
    "asyncio": "import asyncio; new_loop = asyncio.new_event_loop",
    "uvloop": "import uvloop; new_loop = uvloop.new_event_loop",
}


@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_a_coroutine_suspended_on_a_rust_awaitable_at_exit(loop_name):
    # Its frame awaits the Rust coroutine's `__await__` (on abi3, the wrapper); at exit the
    # interpreter closes it, which reaches the wrapper's attributes (`close`) while finalising.
    out = run_script(
        f"""
        import asyncio
        {LOOPS[loop_name]}
        import pyo3_async_pytests as t

        kept = []

        async def outer(trigger):
            await trigger.wait("never")

        loop = new_loop()
        trigger = t.Trigger()
        task = loop.create_task(outer(trigger))
        loop.run_until_complete(asyncio.sleep(0.01))
        kept.append((loop, task, trigger))  # never closed, never collected before exit
        print("suspended", flush=True)
        """
    )
    assert "suspended" in out


def test_a_hand_driven_coroutine_suspended_on_a_rust_awaitable_at_exit():
    # Driven by `send` alone, as a framework's own scheduler would: the frame suspended inside
    # `await` of the Rust coroutine, then kept in a module global until exit.
    out = run_script(
        """
        import asyncio
        import pyo3_async_pytests as t

        async def outer(trigger):
            await trigger.wait("never")

        async def main():
            global kept
            kept = outer(t.Trigger())
            future = kept.send(None)
            print("yielded", type(future).__name__, flush=True)

        asyncio.run(main())
        """
    )
    assert "yielded" in out

"""Small asyncio helpers."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Waits until ``event`` is set or ``seconds`` pass; True if it was set.

    Python 3.11's ``asyncio.wait_for`` drops a cancellation that arrives just as the awaited
    event is set, so a background loop built on it can outlive its own shutdown.
    ``asyncio.timeout`` does not.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True

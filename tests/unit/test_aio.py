from __future__ import annotations

import asyncio

import pytest

from kizuna.aio import wait_event


async def test_a_set_event_ends_the_wait_and_a_timeout_says_so() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 10) is True


async def test_cancelling_while_the_event_is_set_still_stops_the_loop() -> None:
    event = asyncio.Event()

    async def background_loop() -> None:
        while True:
            await wait_event(event, 10)
            event.clear()

    task = asyncio.create_task(background_loop())
    await asyncio.sleep(0)  # the loop is now waiting
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)

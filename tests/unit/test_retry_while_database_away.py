"""kizuna.db.retry_while_database_away: retried through connection errors, not through bugs."""

from __future__ import annotations

import asyncio

import pytest

from kizuna.db import retry_while_database_away


async def test_work_is_retried_until_the_database_answers() -> None:
    calls = 0

    async def work() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionRefusedError("connection refused")

    await retry_while_database_away(work, seconds=5, event="test_retry")
    assert calls == 3


async def test_an_error_that_is_not_the_database_away_is_raised_at_once() -> None:
    calls = 0

    async def work() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        await retry_while_database_away(work, seconds=5, event="test_retry")
    assert calls == 1


async def test_it_gives_up_after_the_time_allowed() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    calls = 0

    async def work() -> None:
        nonlocal calls
        calls += 1
        raise OSError("network unreachable")

    with pytest.raises(OSError, match="unreachable"):
        await retry_while_database_away(work, seconds=0.5, event="test_retry")
    assert calls >= 2  # tried again before giving up
    assert loop.time() - started < 5  # gave up, rather than waiting out a longer backoff

"""Concurrent publishes to a topic go out as one append; a bad publish fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from kizuna.bus import BusUnavailable, OutgoingMessage
from kizuna.bus.group_append import GroupAppender


class RecordingLog:
    def __init__(self) -> None:
        self.appends: list[tuple[str, list[bytes]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.away = False

    async def append(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        await self.gate.wait()
        await asyncio.sleep(0)
        if self.away:
            raise BusUnavailable("log away")
        if any(m.value == b"bad" for m in messages):
            raise ValueError("the log refuses b'bad'")
        self.appends.append((topic, [m.value for m in messages]))

    def appended(self) -> list[bytes]:
        return [value for _, values in self.appends for value in values]


def batch(*values: str) -> list[OutgoingMessage]:
    return [OutgoingMessage("k", v.encode()) for v in values]


async def test_publishes_that_arrive_during_an_append_go_together_in_arrival_order() -> None:
    log = RecordingLog()
    appender = GroupAppender(log.append)
    log.gate.clear()
    first = asyncio.create_task(appender.publish("t", batch("a1", "a2")))
    await asyncio.sleep(0.01)  # the first append is now in flight, held at the gate
    rest = [asyncio.create_task(appender.publish("t", batch(f"{n}1", f"{n}2"))) for n in "bcd"]
    await asyncio.sleep(0.01)
    log.gate.set()
    await asyncio.gather(first, *rest)

    assert [values for _, values in log.appends] == [
        [b"a1", b"a2"],
        [b"b1", b"b2", b"c1", b"c2", b"d1", b"d2"],
    ]


async def test_topics_are_appended_apart() -> None:
    log = RecordingLog()
    appender = GroupAppender(log.append)
    await asyncio.gather(appender.publish("t", batch("x")), appender.publish("u", batch("y")))
    assert sorted(log.appends) == [("t", [b"x"]), ("u", [b"y"])]


async def test_a_publish_the_log_refuses_fails_alone() -> None:
    log = RecordingLog()
    appender = GroupAppender(log.append)
    log.gate.clear()
    first = asyncio.create_task(appender.publish("t", batch("a")))
    await asyncio.sleep(0.01)
    good_before = asyncio.create_task(appender.publish("t", batch("b")))
    bad = asyncio.create_task(appender.publish("t", batch("bad")))
    good_after = asyncio.create_task(appender.publish("t", batch("c")))
    await asyncio.sleep(0.01)
    log.gate.set()

    await asyncio.gather(first, good_before, good_after)
    with pytest.raises(ValueError, match="refuses"):
        await bad
    assert log.appended() == [b"a", b"b", b"c"]


async def test_when_the_log_is_away_every_publish_in_the_group_fails() -> None:
    log = RecordingLog()
    appender = GroupAppender(log.append)
    log.away = True
    results = await asyncio.gather(
        appender.publish("t", batch("a")),
        appender.publish("t", batch("b")),
        return_exceptions=True,
    )
    assert all(isinstance(r, BusUnavailable) for r in results)
    log.away = False
    await appender.publish("t", batch("c"))  # and the topic is usable again
    assert log.appended() == [b"c"]


async def test_a_group_never_exceeds_the_limit_unless_one_publish_does() -> None:
    log = RecordingLog()
    appender = GroupAppender(log.append, max_group_messages=3)
    log.gate.clear()
    publishes = []
    for name, size in zip("abcdef", [1, 1, 2, 5, 1, 1], strict=True):
        values = [f"{name}{i}" for i in range(size)]
        publishes.append(asyncio.create_task(appender.publish("t", batch(*values))))
        await asyncio.sleep(0.001)  # arrive one after another, a's append held at the gate
    log.gate.set()
    await asyncio.gather(*publishes)
    # a alone (in flight); b + c fill 3; d is 5 on its own; e + f
    assert [len(values) for _, values in log.appends] == [1, 3, 5, 2]


async def test_a_cancelled_caller_does_not_stop_the_others() -> None:
    log = RecordingLog()
    appender = GroupAppender(log.append)
    log.gate.clear()
    first = asyncio.create_task(appender.publish("t", batch("a")))
    await asyncio.sleep(0.01)
    gone = asyncio.create_task(appender.publish("t", batch("b")))
    stays = asyncio.create_task(appender.publish("t", batch("c")))
    await asyncio.sleep(0.01)
    gone.cancel()
    log.gate.set()
    await asyncio.gather(first, stays)
    with pytest.raises(asyncio.CancelledError):
        await gone
    await appender.close()
    assert log.appended() == [b"a", b"b", b"c"]

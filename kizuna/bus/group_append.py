"""Group append: publishes to one topic that arrive while an append is in flight wait and then
go together, in arrival order, as the next append. Concurrent publishers of a topic (ingest
answering many requests at once) otherwise queue one by one on the topic's partition locks,
one statement and one commit each.

A group that fails for a reason other than the log being away is appended again one publish
at a time, so a publish that cannot be appended fails alone and never takes the others in its
group down with it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from kizuna.bus.base import BusUnavailable, OutgoingMessage

Append = Callable[[str, Sequence[OutgoingMessage]], Awaitable[None]]
MAX_GROUP_MESSAGES = 5_000


@dataclass
class _Publish:
    messages: Sequence[OutgoingMessage]
    done: asyncio.Future[None]


@dataclass
class _Topic:
    waiting: list[_Publish] = field(default_factory=list)
    flusher: asyncio.Task[None] | None = None


class GroupAppender:
    def __init__(self, append: Append, max_group_messages: int = MAX_GROUP_MESSAGES) -> None:
        self._append = append
        self._max = max_group_messages
        self._topics: dict[str, _Topic] = {}

    async def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        state = self._topics.setdefault(topic, _Topic())
        publish = _Publish(messages, asyncio.get_running_loop().create_future())
        state.waiting.append(publish)
        if state.flusher is None:
            state.flusher = asyncio.create_task(self._flush(topic, state))
        try:
            await asyncio.shield(publish.done)
        except asyncio.CancelledError:
            # The caller stops waiting; its messages may still be appended (at least once).
            publish.done.add_done_callback(_retrieve)
            raise

    async def close(self) -> None:
        flushers = [s.flusher for s in self._topics.values() if s.flusher is not None]
        if flushers:
            await asyncio.gather(*flushers, return_exceptions=True)

    async def _flush(self, topic: str, state: _Topic) -> None:
        group: list[_Publish] = []
        try:
            while state.waiting:
                group = self._take_group(state)
                await self._append_group(topic, group)
        finally:
            state.flusher = None
            # Unsettled publishes are left only if this task was cancelled.
            for publish in [*group, *state.waiting]:
                _settle(publish, BusUnavailable("the bus is closing"))
            state.waiting.clear()

    def _take_group(self, state: _Topic) -> list[_Publish]:
        count, size = 0, 0
        for publish in state.waiting:
            if count and size + len(publish.messages) > self._max:
                break
            count += 1
            size += len(publish.messages)
        group, state.waiting[:] = state.waiting[:count], state.waiting[count:]
        return group

    async def _append_group(self, topic: str, group: list[_Publish]) -> None:
        try:
            await self._append(topic, [m for publish in group for m in publish.messages])
        except BusUnavailable as error:
            for publish in group:
                _settle(publish, error)
            return
        except Exception as error:
            if len(group) == 1:
                _settle(group[0], error)
                return
            for publish in group:
                await self._append_group(topic, [publish])
            return
        for publish in group:
            _settle(publish, None)


def _retrieve(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()


def _settle(publish: _Publish, error: BaseException | None) -> None:
    if publish.done.done():
        return
    if error is None:
        publish.done.set_result(None)
    else:
        publish.done.set_exception(error)

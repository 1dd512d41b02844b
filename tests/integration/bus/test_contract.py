"""The bus contract, run against real Kafka and against the PostgreSQL event log."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from kizuna import topics
from kizuna.bus import Bus, BusMessage, ConsumerRunner, Decoded, OutgoingMessage, PoisonMessage
from kizuna.bus.base import Consumer
from kizuna.envelope import Envelope
from tests.integration.bus.conftest import PARTITIONS, TOPIC, BusTarget

OpenBus = Callable[[], Bus]


async def started(open_bus: OpenBus) -> Bus:
    bus = open_bus()
    await bus.start()
    await bus.ensure_topics([TOPIC, topics.DEAD_LETTER])
    return bus


def numbered(count: int, keys: int, start: int = 0) -> list[OutgoingMessage]:
    return [
        OutgoingMessage(f"key-{i % keys}", f"{i}".encode()) for i in range(start, start + count)
    ]


async def drain(
    consumer: Consumer, want: int, timeout: float = 30.0, commit: bool = True
) -> list[BusMessage]:
    seen: list[BusMessage] = []

    async def loop() -> None:
        while len(seen) < want:
            batch = await consumer.fetch(100, 0.5)
            seen.extend(batch)
            if batch and commit:
                await consumer.commit(batch)

    await asyncio.wait_for(loop(), timeout)
    return seen


async def keep_consuming(consumer: Consumer, into: list[BusMessage], stop: asyncio.Event) -> None:
    """Fetch, record and commit until told to stop."""
    while not stop.is_set():
        batch = await consumer.fetch(50, 0.2)
        into.extend(batch)
        if batch:
            await consumer.commit(batch)


def values(messages: Sequence[BusMessage]) -> list[int]:
    return [int(m.value) for m in messages]


async def test_per_key_order_is_kept(open_bus: OpenBus) -> None:
    bus = await started(open_bus)
    for start in range(0, 600, 100):
        await bus.publish_batch(TOPIC, numbered(100, keys=12, start=start))
    consumer = bus.consumer("order", [TOPIC])
    await consumer.start()
    try:
        seen = await drain(consumer, 600)
    finally:
        await consumer.close()

    by_key: dict[str, list[int]] = defaultdict(list)
    for message in seen:
        by_key[message.key].append(int(message.value))
    assert len(by_key) == 12
    for key, sequence in by_key.items():
        expected = [i for i in range(600) if f"key-{i % 12}" == key]
        assert sequence == expected, key
    assert len({m.partition for m in seen}) > 1


async def test_concurrent_publishers_get_every_message_one_offset(open_bus: OpenBus) -> None:
    """Publishers racing for the same partitions: no offset is taken twice or skipped, and each
    publisher's per-key order holds."""
    buses = [await started(open_bus) for _ in range(3)]

    async def publish_all(bus: Bus, lane: int) -> None:
        for start in range(0, 400, 40):
            batch = [
                OutgoingMessage(f"key-{i % 9}", f"{lane}:{i}".encode())
                for i in range(start, start + 40)
            ]
            await bus.publish_batch(TOPIC, batch)

    await asyncio.gather(*(publish_all(bus, lane) for lane, bus in enumerate(buses)))
    consumer = buses[0].consumer("racers", [TOPIC])
    await consumer.start()
    try:
        seen = await drain(consumer, 1200)
    finally:
        await consumer.close()
        for bus in buses[1:]:
            await bus.close()

    assert sorted(m.value for m in seen) == sorted(
        f"{lane}:{i}".encode() for lane in range(3) for i in range(400)
    )
    by_partition: dict[int, list[int]] = defaultdict(list)
    for message in seen:
        by_partition[message.partition].append(message.offset)
    for offsets in by_partition.values():
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
    by_lane_and_key: dict[tuple[str, str], list[int]] = defaultdict(list)
    for message in seen:
        lane, _, i = message.value.decode().partition(":")
        by_lane_and_key[(lane, message.key)].append(int(i))
    assert all(order == sorted(order) for order in by_lane_and_key.values())


async def test_uncommitted_messages_are_redelivered_after_consumer_is_killed(
    open_bus: OpenBus, target: BusTarget
) -> None:
    bus = await started(open_bus)
    await bus.publish_batch(TOPIC, numbered(40, keys=8))
    child = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("consumer_proc.py")),
            target.bus_url,
            target.database_url,
            target.topic_prefix,
            "killed",
            TOPIC,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        async with asyncio.timeout(60):
            first_line = ""
            while not first_line.startswith("seen "):
                first_line = await asyncio.to_thread(child.stdout.readline)
                assert first_line, "the consumer process ended early"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    consumer = bus.consumer("killed", [TOPIC])
    await consumer.start()
    try:
        seen = await drain(consumer, 40, timeout=60)
    finally:
        await consumer.close()
    assert sorted(values(seen)) == list(range(40))
    killed_partition, killed_offset = (int(x) for x in first_line.split()[1:])
    assert any(m.partition == killed_partition and m.offset == killed_offset for m in seen), (
        "the message the killed consumer was processing must come again"
    )


async def test_nothing_is_lost_across_restarts_of_producer_and_consumer(open_bus: OpenBus) -> None:
    first_producer = await started(open_bus)
    await first_producer.publish_batch(TOPIC, numbered(50, keys=5))
    await first_producer.close()

    consumer_bus = await started(open_bus)
    consumer = consumer_bus.consumer("restart", [TOPIC])
    await consumer.start()
    first = await drain(consumer, 50)
    await consumer.close()

    second_producer = await started(open_bus)
    await second_producer.publish_batch(TOPIC, numbered(50, keys=5, start=50))
    await second_producer.close()

    consumer = consumer_bus.consumer("restart", [TOPIC])
    await consumer.start()
    try:
        second = await drain(consumer, 50)
        assert await consumer.fetch(100, 1.0) == []
    finally:
        await consumer.close()

    assert sorted(values(first)) == list(range(50))
    assert sorted(values(second)) == list(range(50, 100))


async def test_two_consumers_of_one_group_share_the_work(open_bus: OpenBus) -> None:
    bus = await started(open_bus)
    first, second = bus.consumer("shared", [TOPIC]), bus.consumer("shared", [TOPIC])
    await first.start()
    await second.start()
    seen: dict[str, list[BusMessage]] = {"first": [], "second": []}
    stop = asyncio.Event()

    tasks = [
        asyncio.create_task(keep_consuming(first, seen["first"], stop)),
        asyncio.create_task(keep_consuming(second, seen["second"], stop)),
    ]
    try:
        async with asyncio.timeout(60):
            while not (
                first.assignment()
                and second.assignment()
                and len(first.assignment() | second.assignment()) == PARTITIONS
                and not first.assignment() & second.assignment()
            ):
                await asyncio.sleep(0.1)
        await bus.publish_batch(TOPIC, numbered(400, keys=40))
        async with asyncio.timeout(60):
            while len(seen["first"]) + len(seen["second"]) < 400:
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await first.close()
        await second.close()

    all_values = values(seen["first"]) + values(seen["second"])
    assert sorted(all_values) == list(range(400)), "each message processed by exactly one"
    assert seen["first"]
    assert seen["second"]
    assert not {m.partition for m in seen["first"]} & {m.partition for m in seen["second"]}


async def test_a_member_joining_mid_batch_never_gets_the_batch_in_hand(open_bus: OpenBus) -> None:
    bus = await started(open_bus)
    await bus.publish_batch(TOPIC, numbered(200, keys=40))
    first, second = bus.consumer("midjoin", [TOPIC]), bus.consumer("midjoin", [TOPIC])
    await first.start()
    in_hand: list[BusMessage] = []
    async with asyncio.timeout(60):
        while not in_hand:
            in_hand = await first.fetch(50, 0.5)
    seen: dict[str, list[BusMessage]] = {"first": list(in_hand), "second": []}
    stop = asyncio.Event()

    async def join_and_run() -> None:
        await second.start()  # on Kafka this returns once the group has rebalanced
        await keep_consuming(second, seen["second"], stop)

    second_task = asyncio.create_task(join_and_run())
    await asyncio.sleep(3)  # the group rebalances while the first batch is still in hand
    await first.commit(in_hand)
    first_task = asyncio.create_task(keep_consuming(first, seen["first"], stop))
    try:
        async with asyncio.timeout(60):
            while len(seen["first"]) + len(seen["second"]) < 200:
                await asyncio.sleep(0.1)
        await asyncio.sleep(1)
    finally:
        stop.set()
        await asyncio.gather(first_task, second_task)
        await first.close()
        await second.close()

    in_hand_values = set(values(in_hand))
    assert not in_hand_values & set(values(seen["second"])), "two members had one batch"
    assert sorted(values(seen["first"]) + values(seen["second"])) == list(range(200))


async def test_members_with_different_subscriptions_leave_nothing_unowned(
    open_bus: OpenBus,
) -> None:
    bus = await started(open_bus)
    await bus.ensure_topics(["other"])
    old, new = bus.consumer("mixed", [TOPIC]), bus.consumer("mixed", [TOPIC, "other"])
    await old.start()
    await new.start()
    await bus.publish_batch(TOPIC, numbered(80, keys=16))
    await bus.publish_batch("other", numbered(40, keys=16, start=1000))
    seen: list[BusMessage] = []
    stop = asyncio.Event()

    tasks = [
        asyncio.create_task(keep_consuming(old, seen, stop)),
        asyncio.create_task(keep_consuming(new, seen, stop)),
    ]
    try:
        async with asyncio.timeout(60):
            while len(seen) < 120:
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await old.close()
        await new.close()
    assert sorted(values(seen)) == [*range(80), *range(1000, 1040)]


async def test_poison_message_goes_to_dead_letter_and_consumer_goes_on(open_bus: OpenBus) -> None:
    bus = await started(open_bus)
    good = [Envelope.new("track", "ws_1", f"user-{i}", {"n": i}) for i in range(4)]
    newer = good[0].model_copy(update={"id": "from-the-future"}).model_dump(mode="json")
    newer["schema_version"] = 99
    await bus.publish_batch(TOPIC, [OutgoingMessage(good[0].bus_key, good[0].to_bytes())])
    await bus.publish_batch(TOPIC, [OutgoingMessage(good[0].bus_key, b"{not json")])
    await bus.publish_batch(TOPIC, [OutgoingMessage(good[0].bus_key, json.dumps(newer).encode())])
    await bus.publish_batch(TOPIC, [OutgoingMessage(e.bus_key, e.to_bytes()) for e in good[1:]])
    handled: list[Envelope] = []

    async def handle(batch: Sequence[Decoded[Envelope]]) -> None:
        if any(item.value.payload["n"] == 3 for item in batch):
            raise PoisonMessage("n=3 can never be handled")
        handled.extend(item.value for item in batch)

    runner = ConsumerRunner(
        bus, "poison", [TOPIC], lambda m: Envelope.from_bytes(m.value), handle, poll_timeout=0.2
    )
    runner.start()
    try:
        async with asyncio.timeout(60):
            while len(handled) < 3:
                await asyncio.sleep(0.05)
    finally:
        await runner.stop()
    assert sorted(e.id for e in handled) == sorted(e.id for e in good[:3])

    dead = bus.consumer("dlq-reader", [topics.DEAD_LETTER])
    await dead.start()
    try:
        letters = await drain(dead, 3)
    finally:
        await dead.close()
    reasons = {letter.value: letter.headers["dlq.reason"] for letter in letters}
    assert reasons[b"{not json"].startswith("decode:")
    assert reasons[json.dumps(newer).encode()].startswith("decode:")
    assert reasons[good[3].to_bytes()] == "handler: n=3 can never be handled"
    assert {letter.headers["dlq.group"] for letter in letters} == {"poison"}
    assert {letter.headers["dlq.topic"] for letter in letters} == {TOPIC}


async def test_handler_failure_is_retried_and_committed_once(open_bus: OpenBus) -> None:
    bus = await started(open_bus)
    await bus.publish_batch(TOPIC, numbered(20, keys=4))
    calls: Counter[int] = Counter()
    failed: list[int] = []

    async def handle(batch: Sequence[Decoded[int]]) -> None:
        for item in batch:
            calls[item.value] += 1
        if not failed:
            failed.extend(item.value for item in batch)
            raise ConnectionError("database briefly away")

    runner = ConsumerRunner(bus, "retry", [TOPIC], lambda m: int(m.value), handle, poll_timeout=0.2)
    runner.start()
    try:
        async with asyncio.timeout(60):
            while len(calls) < 20:
                await asyncio.sleep(0.05)
    finally:
        await runner.stop()

    consumer = bus.consumer("retry", [TOPIC])
    await consumer.start()
    try:
        assert await consumer.fetch(100, 1.5) == [], "everything handled was committed"
    finally:
        await consumer.close()
    assert set(calls) == set(range(20))
    assert all(calls[value] == 2 for value in failed), "the failed batch was handled again"
    assert all(calls[value] == 1 for value in set(range(20)) - set(failed))

"""A consumer in its own process, for tests that SIGKILL it. It prints each message it is
given as `seen <partition> <offset>` and then hangs in the handler, so it never commits."""

from __future__ import annotations

import asyncio
import sys

from kizuna.bus.kafka import KafkaBus
from kizuna.bus.pglog import PostgresLogBus


async def main(bus_url: str, database_url: str, prefix: str, group: str, topic: str) -> None:
    bus = (
        KafkaBus(bus_url.removeprefix("kafka://"), prefix, 4, session_timeout_ms=3000)
        if bus_url.startswith("kafka://")
        else PostgresLogBus(database_url, prefix, 4, rebalance_interval=0.2)
    )
    await bus.start()
    consumer = bus.consumer(group, [topic])
    await consumer.start()
    while True:
        batch = await consumer.fetch(100, 0.5)
        for message in batch:
            print(f"seen {message.partition} {message.offset}", flush=True)
        if batch:
            await asyncio.Event().wait()  # "processing" forever: no commit


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))

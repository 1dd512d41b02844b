"""A service's consumers: started with the app, measured at /metrics, and on shutdown the
batch in hand is finished and committed before the process lets go."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from kizuna.bus import ConsumerRunner, Decoded, OutgoingMessage
from kizuna.bus.factory import bus_from_settings
from kizuna.service import ServiceContext, consumer_runner, create_service_app
from kizuna.settings import KizunaSettings
from tests.integration.apps import running

TOPIC = "raw-events"


async def test_consumers_run_with_the_app_and_finish_their_batch_on_shutdown(
    settings: KizunaSettings,
) -> None:
    handled: list[int] = []
    in_hand = asyncio.Event()

    async def handle(batch: Sequence[Decoded[int]]) -> None:
        in_hand.set()
        await asyncio.sleep(1.0)  # still working when shutdown begins
        handled.extend(item.value for item in batch)

    def make_runner(context: ServiceContext) -> ConsumerRunner[int]:
        return consumer_runner(context, "lifecycle", [TOPIC], lambda m: int(m.value), handle)

    app = create_service_app("lifecycle", settings, consumers=[make_runner])
    publisher = bus_from_settings(settings)
    await publisher.start()
    try:
        async with running(app) as client:
            await publisher.publish_batch(
                TOPIC, [OutgoingMessage(f"k{i}", str(i).encode()) for i in range(20)]
            )
            await asyncio.wait_for(in_hand.wait(), 30)
            metrics = (await client.get("/metrics")).text
            assert 'kizuna_consumer_lag{group="lifecycle"}' in metrics
        # The lifespan has ended: the batch that was in hand is done and committed.
        assert handled, "the batch in hand was finished, not dropped"
        first_batch = set(handled)

        leftover: list[int] = []
        consumer = publisher.consumer("lifecycle", [TOPIC])
        await consumer.start()
        try:
            async with asyncio.timeout(10):
                while len(first_batch) + len(leftover) < 20:
                    leftover.extend(int(m.value) for m in await consumer.fetch(100, 0.5))
        finally:
            await consumer.close()
        assert not first_batch & set(leftover), "what was handled was committed"
        assert sorted(first_batch | set(leftover)) == list(range(20))
    finally:
        await publisher.close()

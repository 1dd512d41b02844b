"""The journey service's timer loop and outbox publisher in their own process, for a test that
SIGKILLs it while timers are due. Settings come from KIZUNA_* variables; the argument is the
clock's time."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime

from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna_journey.runtime import Journeys
from kizuna_journey.settings import JourneySettings


async def main(now: str) -> None:
    settings = JourneySettings()
    engine = create_engine(settings.database_dsn(), pool_size=3)
    bus = bus_from_settings(settings)
    await bus.start()
    journeys = Journeys(
        engine, bus, timer_batch=100, clock=lambda: datetime.fromisoformat(now)
    )  # small batches, so a kill lands between them
    publisher = asyncio.create_task(journeys.run_outbox())
    await journeys.fire_due()
    publisher.cancel()
    while await journeys.publish_outbox():
        pass
    print("done", flush=True)
    await bus.close()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

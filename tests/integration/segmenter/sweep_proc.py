"""The segmenter's sweep and outbox publisher in their own process, for a test that SIGKILLs
it mid-sweep. Settings come from KIZUNA_* variables; the argument is the clock's time."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import datetime

from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna_segmenter import runtime
from kizuna_segmenter.settings import SegmenterSettings


async def main(now: str) -> None:
    runtime.SWEEP_BATCH = 50  # many small transactions, so a kill lands between them
    settings = SegmenterSettings()
    engine = create_engine(settings.database_dsn(), pool_size=2)
    bus = bus_from_settings(settings)
    await bus.start()
    segmenter = runtime.Segmenter(engine, bus, clock=lambda: datetime.fromisoformat(now))
    publisher = asyncio.create_task(segmenter.run_outbox())
    await segmenter.sweep()
    publisher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await publisher
    while await segmenter.publish_outbox():
        pass
    print("done", flush=True)
    await bus.close()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

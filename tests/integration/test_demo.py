"""`kizuna demo` against the five services over real HTTP: it sets up the standard journeys,
sends a shop's history and live traffic, reads some mail, and reports what happened."""

from __future__ import annotations

import asyncio
import contextlib
import io

import httpx

from kizuna import demo
from kizuna.db import create_engine
from kizuna.settings import KizunaSettings
from tests.helpers import make_workspace
from tests.integration.platform import serve_all


async def test_the_demo_runs_its_journeys_and_shows_what_happens(
    database_url: str, topic_prefix: str
) -> None:
    engine = create_engine(database_url, pool_size=1)
    _, write, admin = await make_workspace(engine, "demo")
    await engine.dispose()
    base = KizunaSettings(
        database_url=database_url,
        bus_url="postgres",
        topic_prefix=topic_prefix,
        bus_partitions=2,
        log_level="WARNING",
        log_format="console",
    )
    async with contextlib.AsyncExitStack() as stack:
        urls = await serve_all(stack, base)
        assert demo.not_running(urls) == []
        platform = demo.Platform(urls, write.secret, admin.secret)
        out = io.StringIO()
        options = demo.DemoOptions(
            customers=80, history_days=200, rate=15, duration=8, status_every=2
        )
        code = await asyncio.to_thread(demo.run, platform, options, out)
        text = out.getvalue()
        assert code == 0, text
        assert "Journeys active" in text
        assert text.count("events ") >= 2, text  # status lines while it ran
        async with httpx.AsyncClient(
            base_url=urls["journey"], headers={"Authorization": f"Bearer {admin.secret}"}
        ) as client:
            listed = (await client.get("/v1/journeys")).json()["journeys"]
        demo_journeys = {j["id"]: j["status"] for j in listed if j["id"].startswith("demo-")}
        assert demo_journeys == dict.fromkeys((f"demo-{name}" for name in demo.JOURNEYS), "active")
        for name in demo.JOURNEYS:
            assert f"demo-{name}" in text.split("Journey results")[1]
        async with httpx.AsyncClient(
            base_url=urls["notifier"], headers={"Authorization": f"Bearer {admin.secret}"}
        ) as client:
            mail = (await client.get("/v1/mailbox")).json()["mail"]
        assert mail, "the win-backs and order thanks reached the dev mailbox"
        async with httpx.AsyncClient(
            base_url=urls["journey"], headers={"Authorization": f"Bearer {admin.secret}"}
        ) as client:
            reports = [
                (await client.get(f"/v1/journeys/demo-{name}/results")).json()
                for name in demo.JOURNEYS
            ]
        opened = sum(step["opened"] for r in reports for step in r["steps"])
        assert opened > 0, "the demo read some mail; the journeys' results saw it"
        assert demo.not_running({"nothing": "http://127.0.0.1:9"}) == ["nothing"]

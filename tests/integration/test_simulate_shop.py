"""`kizuna simulate-shop` against a real ingest, profile and segmenter over HTTP: the customers
and orders it sends arrive in profile, and the segmenter spreads the buyers over RFM tiers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from kizuna.cli import app as cli
from kizuna.db import create_engine
from kizuna.settings import KizunaSettings
from kizuna.shop import live, model
from kizuna.shop.sessions import SimEvent
from tests.conftest import database_url_on
from tests.helpers import make_workspace
from tests.integration.apps import service_app
from tests.integration.live import serving

CUSTOMERS, SEED, LIVE_SECONDS, RATE = 200, 7, 3.0, 20.0


@dataclass
class Shop:
    urls: dict[str, str]
    write_key: str
    admin_key: str

    def get(self, service: str, path: str, **params: Any) -> Any:
        response = httpx.get(
            self.urls[service] + path,
            params=params,
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def shop(pg_server_url: str, template_database: str) -> Iterator[Shop]:
    name = f"t_{uuid.uuid4().hex[:12]}"

    async def create() -> tuple[str, str]:
        conn = await asyncpg.connect(pg_server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
        finally:
            await conn.close()
        engine = create_engine(database_url_on(pg_server_url, name), pool_size=1)
        try:
            _, write, admin = await make_workspace(engine, "shop")
        finally:
            await engine.dispose()
        return write.secret, admin.secret

    write_key, admin_key = asyncio.run(create())
    base = KizunaSettings(
        database_url=database_url_on(pg_server_url, name),
        bus_url="postgres",
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        bus_partitions=2,
        log_level="WARNING",
        log_format="console",
    )
    urls: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for service in ("ingest", "profile", "segmenter"):
            urls[service] = stack.enter_context(serving(service_app(service, base)))
        yield Shop(urls, write_key, admin_key)

    async def drop() -> None:
        conn = await asyncpg.connect(pg_server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.5)


def expected(now: datetime) -> list[SimEvent]:
    """What the command sends: the backfill, then the live events due within its duration."""
    config = model.ShopConfig(now, SEED, CUSTOMERS)
    due = now + timedelta(seconds=LIVE_SECONDS)
    return [
        *model.backfill(config),
        *itertools.takewhile(lambda e: e.at < due, live.stream(config, RATE)),
    ]


def test_the_simulated_shop_arrives_in_profile_and_spreads_over_rfm_tiers(shop: Shop) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    result = CliRunner().invoke(
        cli,
        ["simulate-shop", "--customers", str(CUSTOMERS), "--seed", str(SEED),
         "--duration", str(LIVE_SECONDS), "--rate", str(RATE), "--now", now.isoformat(),
         "--ingest-url", shop.urls["ingest"], "--profile-url", shop.urls["profile"],
         "--write-key", shop.write_key, "--admin-key", shop.admin_key],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    events = expected(now)
    orders = {
        e.call["properties"]["order_id"]: e
        for e in events
        if e.call.get("event") == "Order Completed"
    }
    refunded = sum(e.call["properties"]["total"] for e in events
                   if e.call.get("event") == "Order Refunded")  # fmt: skip
    revenue = sum(e.call["properties"]["total"] for e in orders.values()) - refunded
    assert f"sent {len(events):,} events" in result.output
    assert "rejected 0, failed 0; HTTP errors none" in result.output
    assert f"orders {len(orders):,} · revenue ¥{revenue:,.0f}" in result.output
    assert "the latest orders have arrived" in result.output

    def kpis() -> tuple[int, float]:
        first = (now - timedelta(days=731)).date().isoformat()
        periods = shop.get("profile", "/v1/kpis", interval="month", **{"from": first})["periods"]
        return sum(p["orders"] for p in periods), sum(p["revenue"] for p in periods)

    wait_for(lambda: kpis()[0] >= len(orders), "every order in profile")
    assert kpis() == (len(orders), revenue)

    per_customer = Counter(e.call["userId"] for e in orders.values())
    for customer in model.customers(model.ShopConfig(now, SEED, CUSTOMERS))[::10]:
        record = shop.get("profile", f"/v1/customers/{customer.user_id}")
        assert record["profile"]["email"] == customer.email
        assert record["profile"]["first_name"] == customer.first_name
        assert record["profile"]["birthday"] == customer.birthday.isoformat()
        assert record["profile"]["timezone"] == customer.timezone
        assert customer.anonymous_id in record["identifiers"]["anonymous_id"], "browsing merged"
        assert record["facts"]["orders_count"] == per_customer[customer.user_id]
        if customer.email_consent != "unstated":
            assert record["consent"]["email"]["status"] == customer.email_consent

    def tiers() -> dict[str, int]:
        grid = shop.get("segmenter", "/v1/rfm/grid")
        return {t["id"]: t["customers"] for t in grid["tiers"] if t["customers"]}

    wait_for(lambda: sum(tiers().values()) == len(per_customer), "every buyer scored")
    response = httpx.post(
        shop.urls["segmenter"] + "/v1/rfm/recompute",
        headers={"Authorization": f"Bearer {shop.admin_key}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    spread = tiers()
    assert sum(spread.values()) == len(per_customer)
    assert len(spread) >= 6, spread
    assert {"champions", "loyal", "hibernating"} <= spread.keys(), spread

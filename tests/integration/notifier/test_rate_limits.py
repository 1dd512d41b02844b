"""A workspace's email rate limit: a batch goes out at the limit's pace (the consumer waits:
backpressure), what would wait too long is parked in the sends ledger and sent when its turn
comes; nothing is refused, nothing is lost, nothing is sent twice."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from kizuna_notifier.adapters import store
from tests.integration.notifier.conftest import Inbox, NotifierApp, _app, advance, notifier_settings


@pytest.fixture
async def limited_app(
    database_url: str, topic_prefix: str, smtp: tuple[Inbox, int]
) -> AsyncIterator[NotifierApp]:
    inbox, port = smtp
    settings = notifier_settings(
        database_url,
        topic_prefix,
        "postgres",
        notifier_smtp_url=f"smtp://127.0.0.1:{port}",
        notifier_rate_max_wait_seconds=1,
    )
    async for app in _app(settings, inbox):
        yield app


async def test_a_batch_over_the_limit_is_paced_then_parked_and_all_of_it_arrives_once(
    limited_app: NotifierApp,
) -> None:
    app = limited_app
    assert app.inbox is not None
    saved = await app.client.put(
        "/v1/channels/email",
        json={"rate_per_second": 5, "burst": 2, "from": "Sakura Tea <hello@sakura.example>"},
        headers=app.admin,
    )
    assert saved.status_code == 200, saved.text
    await app.template("nudge", subject="Hi {{ customer.first_name }}", text="Tea?")
    requests = [app.request(f"c{i}", "nudge") for i in range(10)]

    started = time.monotonic()
    await app.deliver(*requests)
    paced = time.monotonic() - started
    # 5/s with a burst of 2: seven go within the one second a batch may wait (0, 0, 0.2 … 1.0 s)
    async with app.delivery.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.text(
                    "SELECT status, reason, attempts FROM nt_sends WHERE workspace_id = :ws"
                    " ORDER BY status"
                ),
                {"ws": app.workspace_id},
            )
        ).all()
    statuses = [row.status for row in rows]
    assert statuses.count("sent") == 7
    parked = [row for row in rows if row.status == "retrying"]
    assert len(parked) == 3
    assert {(row.reason, row.attempts) for row in parked} == {("waiting for the rate limit", 0)}
    assert len(app.inbox.received()) == 7
    assert paced >= 0.9, "the limiter made the batch wait for its turns"

    advance(app, seconds=2)
    assert await app.delivery.retry_due() == 3
    received = app.inbox.received()
    assert len(received) == 10
    assert len({m["Message-ID"] for m in received}) == 10
    assert {m["X-Kizuna-Send-Id"] for m in received} == {r.id for r in requests}
    assert {str(m["From"]) for m in received} == {"Sakura Tea <hello@sakura.example>"}


async def test_a_retry_taken_by_a_process_that_died_is_due_again_after_its_lease(
    limited_app: NotifierApp,
) -> None:
    app = limited_app
    assert app.inbox is not None
    await app.client.put("/v1/channels/email", json={"rate_per_second": 1}, headers=app.admin)
    await app.template("nudge", subject="Hi", text="Tea?")
    requests = [app.request(f"d{i}", "nudge") for i in range(4)]
    await app.deliver(*requests)  # two go (burst 1, one more within the second), two parked
    assert len(app.inbox.received()) == 2
    advance(app, seconds=5)
    async with app.delivery.engine.begin() as conn:
        taken = await store.due_retries(conn, app.clock.now, 100)  # …and the taker dies here
    assert len(taken) == 2
    assert await app.delivery.retry_due() == 0, "leased to the process that took them"
    advance(app, seconds=store.RETRY_LEASE_SECONDS + 1)
    assert await app.delivery.retry_due() == 2
    assert len({m["Message-ID"] for m in app.inbox.received()}) == 4

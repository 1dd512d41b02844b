"""Integration webhooks against a real HTTP receiver on loopback that verifies every delivery
with the standardwebhooks library: subscription, signing and rotation, retry spacing on an
injected clock, Retry-After, 410, the dead letters, replay of a time range."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from kizuna import topics
from kizuna.envelope import Envelope
from kizuna_notifier.integrations import Dispatcher
from tests.integration.live import served
from tests.integration.notifier.conftest import T0, NotifierApp, _app, advance, notifier_settings
from tests.integration.notifier.webhook_receiver import WebhookReceiver

ORDER_TYPES = ["order.completed", "segment.entered"]


@contextlib.asynccontextmanager
async def webhooks_app(
    database_url: str, topic_prefix: str, **extra: Any
) -> AsyncIterator[NotifierApp]:
    settings = notifier_settings(database_url, topic_prefix, "postgres", **extra)
    async for app in _app(settings, None):
        dispatcher(app).clock = app.clock
        yield app


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[WebhookReceiver, str]]:
    hooks = WebhookReceiver()
    async with served(hooks.app) as url:
        yield hooks, url


def dispatcher(app: NotifierApp) -> Dispatcher:
    found: Dispatcher = app.app_state.dispatcher
    return found


def order(app: NotifierApp, customer: str, order_id: str, at: datetime | None = None) -> Envelope:
    return Envelope.new(
        "track",
        app.workspace_id,
        customer,
        {
            "type": "track",
            "event": "Order Completed",
            "customerId": customer,
            "properties": {"order_id": order_id, "total": 3200, "currency": "JPY"},
        },
        occurred_at=at or app.clock.now,
        event_id=f"ev-{order_id}",
    )


async def subscribe(
    app: NotifierApp, url: str, event_types: list[str], **extra: Any
) -> dict[str, Any]:
    response = await app.client.post(
        "/v1/webhook-endpoints",
        json={"url": url, "event_types": event_types, **extra},
        headers=app.admin,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def eventually(condition: Callable[[], Any], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def delivery_row(app: NotifierApp, endpoint_id: str) -> Any:
    async with dispatcher(app).engine.connect() as conn:
        return (
            await conn.execute(
                sa.text(
                    "SELECT status, attempts, next_attempt_at, last_status"
                    " FROM nt_webhook_deliveries WHERE endpoint_id = :ep"
                ),
                {"ep": endpoint_id},
            )
        ).one_or_none()


async def until_attempted(app: NotifierApp, endpoint_id: str, attempts: int) -> Any:
    """Wakes the dispatcher until the endpoint's one delivery has had ``attempts`` tries."""
    async with asyncio.timeout(20):
        while True:
            row = await delivery_row(app, endpoint_id)
            if row is not None and row.attempts >= attempts:
                return row
            dispatcher(app).wakeup.set()
            await asyncio.sleep(0.05)


async def test_endpoints_are_checked_and_deliveries_signed_through_a_secret_rotation(
    database_url: str, topic_prefix: str, receiver: tuple[WebhookReceiver, str]
) -> None:
    hooks, base = receiver
    async with webhooks_app(database_url, topic_prefix) as app:
        refused = await app.client.post(
            "/v1/webhook-endpoints",
            json={"url": "ftp://x", "event_types": ["order.shipped"], "secret": "nope"},
            headers=app.admin,
        )
        assert refused.status_code == 422
        fields = {f["field"] for f in refused.json()["error"]["fields"]}
        assert fields == {"body.url", "body.event_types", "body.secret"}
        private = await app.client.post(
            "/v1/webhook-endpoints",
            json={"url": "http://10.1.2.3/hook", "event_types": ["order.completed"]},
            headers=app.admin,
        )
        assert private.status_code == 422
        assert "private" in private.text

        endpoint = await subscribe(app, f"{base}/hook/crm", ORDER_TYPES, description="CRM")
        assert endpoint["secret"].startswith("whsec_")
        hooks.secrets["crm"] = [endpoint["secret"]]
        page = Envelope.new(
            "track",
            app.workspace_id,
            "c1",
            {"type": "page", "event": "Page Viewed", "customerId": "c1"},
        )
        entered = Envelope.new(
            "segment.entered",
            app.workspace_id,
            "c1",
            {"segment_id": "champions", "segment_name": "Champions", "kind": "rfm"},
        )
        await app.publish(topics.RESOLVED_EVENTS, page, order(app, "c1", "o1"))
        await app.publish(topics.SEGMENT_CHANGES, entered)
        await eventually(lambda: len(hooks.at("crm")) == 2)
        by_type = {d.payload["type"]: d for d in hooks.at("crm")}
        assert by_type["order.completed"].payload["data"]["properties"]["order_id"] == "o1"
        assert by_type["order.completed"].payload["data"]["customer_id"] == "c1"
        assert by_type["segment.entered"].payload["data"]["segment_id"] == "champions"
        assert all(d.webhook_id.startswith("msg_") for d in hooks.at("crm"))

        await app.publish(topics.RESOLVED_EVENTS, order(app, "c1", "o1"))  # seen again
        await asyncio.sleep(1.0)
        assert len(hooks.at("crm")) == 2, "a message is delivered once per endpoint"

        old = endpoint["secret"]
        rotated = await app.client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
            json={"overlap_seconds": 3600},
            headers=app.admin,
        )
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert [s["secret"] for s in rotated.json()["secrets"]] == [new, old]
        hooks.secrets["crm"] = [new, old]
        await app.publish(topics.RESOLVED_EVENTS, order(app, "c1", "o2"))
        await eventually(lambda: len(hooks.at("crm")) == 3)
        during = hooks.at("crm")[-1]
        assert during.signatures == 2
        assert set(during.verified_with) == {new, old}  # either secret verifies it

        advance(app, hours=2)  # the overlap is over: only the new secret signs
        await app.publish(topics.RESOLVED_EVENTS, order(app, "c1", "o3"))
        await eventually(lambda: len(hooks.at("crm")) == 4)
        after = hooks.at("crm")[-1]
        assert after.signatures == 1
        assert after.verified_with == (new,)
        assert hooks.unverified == 0
        shown = await app.client.get(
            f"/v1/webhook-endpoints/{endpoint['id']}/secret", headers=app.admin
        )
        assert shown.json()["secrets"] == [{"secret": new, "expires_at": None}]


async def test_retries_follow_the_schedule_and_retry_after_then_die_and_are_replayed(
    database_url: str, topic_prefix: str, receiver: tuple[WebhookReceiver, str]
) -> None:
    hooks, base = receiver
    async with webhooks_app(database_url, topic_prefix) as app:
        endpoint = await subscribe(app, f"{base}/hook/flaky", ["order.completed"])
        hooks.secrets["flaky"] = [endpoint["secret"]]
        hooks.answers["flaky"] = [(503, {}), (429, {"Retry-After": "120"})]
        await app.publish(topics.RESOLVED_EVENTS, order(app, "c1", "r1"))

        first = await until_attempted(app, endpoint["id"], 1)
        assert (first.status, first.last_status) == ("pending", 503)
        wait = (first.next_attempt_at - app.clock.now).total_seconds()
        assert 4.5 <= wait <= 5.5, "5 s with ±10 % jitter"
        advance(app, seconds=wait + 0.01)
        second = await until_attempted(app, endpoint["id"], 2)
        assert second.last_status == 429
        assert second.next_attempt_at - app.clock.now == timedelta(seconds=120)
        advance(app, seconds=60)
        dispatcher(app).wakeup.set()
        await asyncio.sleep(0.5)
        assert not hooks.at("flaky"), "Retry-After is honoured"
        advance(app, seconds=61)
        third = await until_attempted(app, endpoint["id"], 3)
        assert third.status == "succeeded"
        assert len(hooks.at("flaky")) == 1
        attempts = await app.client.get(
            f"/v1/webhook-endpoints/{endpoint['id']}/attempts", headers=app.admin
        )
        log = attempts.json()["attempts"]
        assert [a["status_code"] for a in log] == [200, 429, 503]
        assert all(a["latency_ms"] >= 0 for a in log)
        assert '"status":503' in log[-1]["response"].replace(" ", "")

        # a receiver down for good: the schedule runs out and the message is dead-lettered
        down = await subscribe(app, f"{base}/hook/down", ["order.completed"])
        hooks.secrets["down"] = [down["secret"]]
        hooks.answers["down"] = [(500, {})] * 8
        await app.publish(topics.RESOLVED_EVENTS, order(app, "c2", "r2"))
        spacing = []
        for tries in range(1, 9):
            row = await until_attempted(app, down["id"], tries)
            if row.status == "dead":
                break
            spacing.append((row.next_attempt_at - app.clock.now).total_seconds())
            advance(app, seconds=spacing[-1] + 0.01)
        assert row.status == "dead"
        assert row.attempts == 8
        expected = [5, 300, 1800, 7200, 18000, 36000, 86400]
        assert len(spacing) == len(expected)
        for seen, base_seconds in zip(spacing, expected, strict=True):
            assert base_seconds * 0.9 <= seen <= base_seconds * 1.1
        dead = await app.client.get(
            f"/v1/webhook-endpoints/{down['id']}/dead-letters", headers=app.admin
        )
        assert [d["type"] for d in dead.json()["dead_letters"]] == ["order.completed"]
        replayed = await app.client.post(
            f"/v1/webhook-endpoints/{down['id']}/dead-letters/replay", headers=app.admin
        )
        assert replayed.json() == {"replayed": 1}
        await eventually(lambda: len(hooks.at("down")) == 1)
        assert hooks.at("down")[0].payload["data"]["properties"]["order_id"] == "r2"
        async with asyncio.timeout(20):  # the answer came; the round settles just after
            while (await delivery_row(app, down["id"])).status != "succeeded":
                await asyncio.sleep(0.02)
        endpoint_now = await app.client.get(
            f"/v1/webhook-endpoints/{down['id']}", headers=app.admin
        )
        assert endpoint_now.json()["enabled"] is True
        assert endpoint_now.json()["failing_since"] is None


async def test_gone_disables_at_once_and_persistent_failure_disables_after_the_limit(
    database_url: str, topic_prefix: str, receiver: tuple[WebhookReceiver, str]
) -> None:
    hooks, base = receiver
    async with webhooks_app(
        database_url, topic_prefix, notifier_webhook_disable_after_hours=1
    ) as app:
        ops = await subscribe(app, f"{base}/hook/ops", ["webhook.endpoint.disabled"])
        gone = await subscribe(app, f"{base}/hook/gone", ["order.completed"])
        failing = await subscribe(app, f"{base}/hook/failing", ["segment.entered"])
        hooks.secrets.update(
            ops=[ops["secret"]], gone=[gone["secret"]], failing=[failing["secret"]]
        )
        hooks.answers["gone"] = [(410, {})]
        hooks.answers["failing"] = [(500, {})] * 10
        await app.publish(topics.RESOLVED_EVENTS, order(app, "c1", "g1"))
        await eventually(lambda: len(hooks.at("ops")) == 1)
        notice = hooks.at("ops")[0].payload
        assert notice["type"] == "webhook.endpoint.disabled"
        assert notice["data"]["endpoint_id"] == gone["id"]
        assert notice["data"]["reason"] == "410 Gone"
        shown = (
            await app.client.get(f"/v1/webhook-endpoints/{gone['id']}", headers=app.admin)
        ).json()
        assert (shown["enabled"], shown["disabled_reason"]) == (False, "410 Gone")
        assert (await delivery_row(app, gone["id"])).status == "dead"

        entered = Envelope.new(
            "segment.entered", app.workspace_id, "c1", {"segment_id": "s", "kind": "rule"}
        )
        await app.publish(topics.SEGMENT_CHANGES, entered)
        row = await until_attempted(app, failing["id"], 1)
        for tries in (2, 3, 4):  # 5 s, 5 min, 30 min: still under an hour of failing
            advance(app, seconds=(row.next_attempt_at - app.clock.now).total_seconds() + 0.01)
            row = await until_attempted(app, failing["id"], tries)
        listed = (await app.client.get("/v1/webhook-endpoints", headers=app.admin)).json()
        assert {e["id"]: e["enabled"] for e in listed["endpoints"]}[failing["id"]] is True
        advance(app, seconds=(row.next_attempt_at - app.clock.now).total_seconds() + 0.01)
        await until_attempted(app, failing["id"], 5)  # 2 h later: failing for over an hour
        await eventually(lambda: len(hooks.at("ops")) == 2)
        assert hooks.at("ops")[1].payload["data"]["endpoint_id"] == failing["id"]
        assert "no successful delivery" in hooks.at("ops")[1].payload["data"]["reason"]

        # re-enabled, what was pending for it goes out again
        hooks.answers["failing"] = []
        enabled = await app.client.patch(
            f"/v1/webhook-endpoints/{failing['id']}", json={"enabled": True}, headers=app.admin
        )
        assert enabled.json()["enabled"] is True
        advance(app, hours=6)
        dispatcher(app).wakeup.set()
        await eventually(lambda: len(hooks.at("failing")) == 1)


async def test_replay_of_a_time_range_resends_just_those_messages_with_their_ids(
    database_url: str, topic_prefix: str, receiver: tuple[WebhookReceiver, str]
) -> None:
    hooks, base = receiver
    async with webhooks_app(database_url, topic_prefix) as app:
        endpoint = await subscribe(app, f"{base}/hook/dw", ["order.completed"])
        hooks.secrets["dw"] = [endpoint["secret"]]
        hours = [T0 + timedelta(hours=h) for h in (0, 1, 2)]
        await app.publish(
            topics.RESOLVED_EVENTS, *(order(app, "c1", f"t{i}", at) for i, at in enumerate(hours))
        )
        await eventually(lambda: len(hooks.at("dw")) == 3)
        first_ids = {
            d.payload["data"]["properties"]["order_id"]: d.webhook_id for d in hooks.at("dw")
        }
        bad = await app.client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/replay",
            json={"since": "2026-03-01T12:00:00+00:00", "until": "2026-03-01T11:00:00+00:00"},
            headers=app.admin,
        )
        assert bad.status_code == 422
        replayed = await app.client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/replay",
            json={
                "since": (T0 + timedelta(minutes=30)).isoformat(),
                "until": (T0 + timedelta(minutes=90)).isoformat(),
            },
            headers=app.admin,
        )
        assert replayed.json() == {"replayed": 1}
        await eventually(lambda: len(hooks.at("dw")) == 4)
        again = hooks.at("dw")[-1]
        assert again.payload["data"]["properties"]["order_id"] == "t1"
        assert again.webhook_id == first_ids["t1"]
        await asyncio.sleep(0.5)
        assert len(hooks.at("dw")) == 4


async def test_journey_and_lifecycle_events_reach_their_subscribers(
    database_url: str, topic_prefix: str, receiver: tuple[WebhookReceiver, str]
) -> None:
    hooks, base = receiver
    async with webhooks_app(database_url, topic_prefix) as app:
        endpoint = await subscribe(app, f"{base}/hook/all", ["*"])
        hooks.secrets["all"] = [endpoint["secret"]]
        entered = Envelope.new(
            "journey.entered",
            app.workspace_id,
            "c1",
            {"journey_id": "welcome", "run_id": "r1", "customer_id": "c1", "holdout": False},
            event_id="journey-entered:r1",
        )
        created = Envelope.new(
            "customer.created",
            app.workspace_id,
            "c1",
            {"customer_id": "c1", "known": True},
            event_id="created:c1",
        )
        await app.publish(topics.JOURNEY_EVENTS, entered)
        await app.publish(topics.CUSTOMER_LIFECYCLE, created)
        await eventually(lambda: len(hooks.at("all")) == 2)
        kinds = {d.payload["type"]: d.payload["data"] for d in hooks.at("all")}
        assert kinds["journey.entered"]["journey_id"] == "welcome"
        assert kinds["customer.created"]["known"] is True

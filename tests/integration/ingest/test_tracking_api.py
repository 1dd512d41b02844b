"""The tracking API over HTTP, read back from the real Kafka topic."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import orjson
import pytest

from kizuna.envelope import Envelope
from tests.integration.ingest.conftest import Ingest


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def by_id(envelopes: list[Envelope]) -> dict[str, Envelope]:
    return {e.id: e for e in envelopes}


async def test_both_auth_forms_and_every_call_type(ingest: Ingest) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("track", {"userId": "u1", "event": "Signed Up", "messageId": "m-track"}),
        ("identify", {"userId": "u1", "traits": {"email": "a@example.com"}, "messageId": "m-id"}),
        ("page", {"anonymousId": "a1", "name": "Home", "messageId": "m-page"}),
        ("screen", {"userId": "u1", "name": "Cart", "messageId": "m-screen"}),
        ("group", {"userId": "u1", "groupId": "g1", "messageId": "m-group"}),
        ("alias", {"userId": "u1", "previousId": "a1", "messageId": "m-alias"}),
    ]
    for index, (call_type, body) in enumerate(calls):
        if index % 2:
            response = await ingest.client.post(
                f"/v1/{call_type}", json=body, headers=basic(ingest.write_key)
            )
        else:
            response = await ingest.client.post(
                f"/v1/{call_type}", json={**body, "writeKey": ingest.write_key}
            )
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True}

    stored = by_id(await ingest.stored(6))
    assert set(stored) == {body["messageId"] for _, body in calls}
    for call_type, body in calls:
        envelope = stored[body["messageId"]]
        assert envelope.type == call_type
        assert envelope.workspace_id == ingest.workspace_id
        assert envelope.customer_key == body.get("userId", body.get("anonymousId"))
        assert "writeKey" not in envelope.payload
    assert stored["m-id"].payload["traits"] == {"email": "a@example.com"}


SHORT_PATHS = {
    "t": "track",
    "p": "page",
    "i": "identify",
    "g": "group",
    "a": "alias",
    "s": "screen",
}


async def test_analytics_js_short_paths_with_text_plain(ingest: Ingest) -> None:
    for short in SHORT_PATHS:
        body = {
            "writeKey": ingest.write_key,
            "userId": "u",
            "anonymousId": "anon",
            "event": "Clicked",
            "groupId": "g",
            "previousId": "p",
            "messageId": f"m-{short}",
        }
        response = await ingest.client.post(
            f"/v1/{short}", content=orjson.dumps(body), headers={"Content-Type": "text/plain"}
        )
        assert response.status_code == 200, (short, response.text)
    batch = {
        "writeKey": ingest.write_key,
        "batch": [{"type": "track", "userId": "u", "event": "Batched", "messageId": "m-b"}],
    }
    response = await ingest.client.post(
        "/v1/b", content=orjson.dumps(batch), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 200
    stored = by_id(await ingest.stored(7))
    for short, call_type in SHORT_PATHS.items():
        assert stored[f"m-{short}"].type == call_type
    assert stored["m-b"].payload["event"] == "Batched"


async def test_gzip_bodies(ingest: Ingest) -> None:
    body = {"batch": [{"type": "track", "userId": f"u{i}", "event": "Zipped"} for i in range(50)]}
    response = await ingest.client.post(
        "/v1/batch",
        content=gzip.compress(orjson.dumps(body)),
        headers={
            **basic(ingest.write_key),
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 200
    assert response.json() == {"success": True, "accepted": 50}
    assert len(await ingest.stored(50)) == 50

    broken = await ingest.client.post(
        "/v1/track", content=b"not gzip at all", headers={"Content-Encoding": "gzip"}
    )
    assert broken.status_code == 400


async def test_batch_keeps_good_items_and_reports_bad_ones(ingest: Ingest) -> None:
    batch = {
        "writeKey": ingest.write_key,
        "context": {"library": {"name": "analytics-python"}},
        "batch": [
            {"type": "track", "userId": "u1", "event": "Ok", "messageId": "good-0"},
            {"type": "track", "userId": "u1", "messageId": "bad-1"},
            {"type": "identify", "traits": {"a": 1}, "messageId": "bad-2"},
            {"type": "alias", "userId": "u1", "messageId": "bad-3"},
            {
                "type": "track",
                "userId": "u1",
                "event": "Order Completed",
                "messageId": "bad-4",
                "properties": {"order_id": "o1", "revenue": -5},
            },
            {
                "type": "track",
                "userId": "u1",
                "event": "Order Completed",
                "messageId": "good-5",
                "properties": {
                    "order_id": "o2",
                    "revenue": 1200,
                    "currency": "JPY",
                    "products": [{"product_id": "p1", "price": 600, "quantity": 2}],
                },
            },
            {"type": "launch", "userId": "u1", "messageId": "bad-6"},
            "not an object",
            {
                "type": "page",
                "anonymousId": "a",
                "messageId": "good-8",
                "context": {"page": {"path": "/"}},
            },
        ],
    }
    response = await ingest.client.post("/v1/batch", json=batch)
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 3
    assert {r["field"] for r in body["rejected"]} == {
        "batch[1].event",
        "batch[2].userId",
        "batch[3].previousId",
        "batch[4].properties.revenue",
        "batch[6].type",
        "batch[7].(body)",
    }
    stored = by_id(await ingest.stored(3))
    assert set(stored) == {"good-0", "good-5", "good-8"}
    assert stored["good-0"].payload["context"] == {"library": {"name": "analytics-python"}}
    assert stored["good-8"].payload["context"] == {
        "library": {"name": "analytics-python"},
        "page": {"path": "/"},
    }

    all_bad = await ingest.client.post(
        "/v1/batch",
        json={"writeKey": ingest.write_key, "batch": [{"type": "track", "userId": "u"}]},
    )
    assert all_bad.status_code == 400
    assert all_bad.json()["error"]["fields"][0]["field"] == "batch[0].event"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/track", {"userId": "u"}, "event"),
        ("/v1/track", {"event": "No one"}, "userId"),
        ("/v1/alias", {"userId": "u"}, "previousId"),
        ("/v1/group", {"userId": "u"}, "groupId"),
        ("/v1/track", {"userId": "u", "event": "E", "properties": [1]}, "properties"),
        ("/v1/track", {"userId": "u", "event": "E", "timestamp": "yesterday"}, "timestamp"),
        (
            "/v1/track",
            {
                "userId": "u",
                "event": "Order Completed",
                "properties": {"order_id": "o", "revenue": "lots"},
            },
            "properties.revenue",
        ),
        (
            "/v1/track",
            {"userId": "u", "event": "Order Completed", "properties": {"revenue": 10}},
            "properties.order_id",
        ),
        (
            "/v1/track",
            {"userId": "u", "event": "Product Added", "properties": {"quantity": 1.5}},
            "properties.quantity",
        ),
        (
            "/v1/track",
            {
                "userId": "u",
                "event": "Order Completed",
                "properties": {"order_id": "o", "products": [{"price": -1}]},
            },
            "properties.products[0].price",
        ),
    ],
)
async def test_invalid_calls_get_400_naming_the_field(
    ingest: Ingest, path: str, body: dict[str, Any], field: str
) -> None:
    response = await ingest.client.post(path, json={**body, "writeKey": ingest.write_key})
    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == field


async def test_invalid_json_and_wrong_keys(ingest: Ingest) -> None:
    bad_json = await ingest.client.post(
        "/v1/track", content=b"{oops", headers=basic(ingest.write_key)
    )
    assert bad_json.status_code == 400
    assert "not valid JSON" in bad_json.json()["error"]["message"]
    missing = await ingest.client.post("/v1/track", json={"userId": "u", "event": "E"})
    assert missing.status_code == 401
    unknown = await ingest.client.post(
        "/v1/track", json={"userId": "u", "event": "E"}, headers=basic("kz_write_unknown")
    )
    assert unknown.status_code == 401
    assert unknown.json()["error"]["message"] == "unknown or revoked write key"


async def test_size_limits_answer_413(ingest: Ingest) -> None:
    big = {
        "writeKey": ingest.write_key,
        "userId": "u",
        "event": "E",
        "properties": {"blob": "x" * 33_000},
    }
    assert (await ingest.client.post("/v1/track", json=big)).status_code == 413

    too_many = {
        "writeKey": ingest.write_key,
        "batch": [{"type": "track", "userId": "u", "event": "E"}] * 2501,
    }
    response = await ingest.client.post("/v1/batch", json=too_many)
    assert response.status_code == 413
    assert "2500" in response.json()["error"]["message"]

    too_big = {
        "writeKey": ingest.write_key,
        "batch": [
            {"type": "track", "userId": "u", "event": "E", "properties": {"blob": "x" * 20_000}}
        ]
        * 30,
    }
    assert (await ingest.client.post("/v1/batch", json=too_big)).status_code == 413

    bomb_items: list[Any] = [too_big["batch"][0]] * 60
    bomb = gzip.compress(orjson.dumps({**too_big, "batch": bomb_items}))
    assert len(bomb) < 500_000
    response = await ingest.client.post(
        "/v1/batch", content=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 413

    one_big_item = {
        "writeKey": ingest.write_key,
        "batch": [
            {"type": "track", "userId": "u", "event": "E", "properties": {"blob": "x" * 40_000}},
            {"type": "track", "userId": "u", "event": "Small", "messageId": "small"},
        ],
    }
    response = await ingest.client.post("/v1/batch", json=one_big_item)
    assert response.status_code == 200
    assert response.json()["rejected"] == [
        {"field": "batch[0].(event)", "problem": "is larger than 32 KB"}
    ]


async def test_message_id_is_kept_or_generated_and_clock_skew_corrected(ingest: Ingest) -> None:
    await ingest.client.post(
        "/v1/track", json={"writeKey": ingest.write_key, "userId": "u", "event": "No id"}
    )
    # RudderStack style: originalTimestamp and sentAt from a clock one hour fast.
    await ingest.client.post(
        "/v1/track",
        json={
            "writeKey": ingest.write_key,
            "userId": "u",
            "event": "Skewed",
            "messageId": "skewed",
            "originalTimestamp": "2030-01-01T10:00:00+00:00",
            "sentAt": "2030-01-01T10:00:05+00:00",
        },
    )
    await ingest.client.post(
        "/v1/track",
        json={
            "writeKey": ingest.write_key,
            "userId": "u",
            "event": "Backfill",
            "messageId": "old",
            "timestamp": "2020-05-01T00:00:00Z",
        },
    )
    stored = await ingest.stored(3)
    generated = next(e for e in stored if e.payload["event"] == "No id")
    assert generated.id.startswith("kz-")
    assert generated.payload["messageId"] == generated.id
    skewed = next(e for e in stored if e.id == "skewed")
    lag = skewed.received_at - skewed.occurred_at
    assert 4.9 <= lag.total_seconds() <= 5.1
    assert skewed.payload["originalTimestamp"] == "2030-01-01T10:00:00+00:00"
    backfill = next(e for e in stored if e.id == "old")
    assert backfill.occurred_at.year == 2020


async def test_sources_disable_restrict_origins_and_rate_limit(ingest: Ingest) -> None:
    [source] = (await ingest.client.get("/v1/sources", headers=ingest.admin)).json()
    key_id = source["key_id"]
    call = {"writeKey": ingest.write_key, "userId": "u", "event": "E"}

    patched = await ingest.client.patch(
        f"/v1/sources/{key_id}",
        headers=ingest.admin,
        json={"allowed_origins": ["https://shop.example"], "rate_limit_per_second": 0.1},
    )
    assert patched.status_code == 200

    allowed = await ingest.client.post(
        "/v1/track", json=call, headers={"Origin": "https://shop.example"}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    other = await ingest.client.post(
        "/v1/track", json=call, headers={"Origin": "https://evil.example"}
    )
    assert other.status_code == 403
    assert "access-control-allow-origin" not in other.headers
    preflight = await ingest.client.options("/v1/track", headers={"Origin": "https://shop.example"})
    assert preflight.status_code == 204

    statuses = [(await ingest.client.post("/v1/track", json=call)).status_code for _ in range(3)]
    assert 429 in statuses
    limited = await ingest.client.post("/v1/track", json=call)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1

    for rate in (0, 1e-300, 1e12):
        out_of_range = await ingest.client.patch(
            f"/v1/sources/{key_id}", headers=ingest.admin, json={"rate_limit_per_second": rate}
        )
        assert out_of_range.status_code == 422, rate
    bad = await ingest.client.patch(
        f"/v1/sources/{key_id}",
        headers=ingest.admin,
        json={"allowed_origins": ["not a url"], "enabled": None},
    )
    assert bad.status_code == 422
    assert {f["field"] for f in bad.json()["error"]["fields"]} == {
        "body.allowed_origins.0",
        "body.enabled",
    }
    await ingest.client.patch(
        f"/v1/sources/{key_id}", headers=ingest.admin, json={"enabled": False}
    )
    disabled = await ingest.client.post("/v1/track", json=call)
    assert disabled.status_code == 403
    assert "disabled" in disabled.json()["error"]["message"]
    assert (
        await ingest.client.patch(
            "/v1/sources/key_nope", headers=ingest.admin, json={"enabled": True}
        )
    ).status_code == 404


async def test_events_of_one_customer_share_a_key(ingest: Ingest) -> None:
    for i in range(5):
        await ingest.client.post(
            "/v1/track", json={"writeKey": ingest.write_key, "userId": "same", "event": f"E{i}"}
        )
    messages = await ingest.raw_messages(5)
    assert {m.key for m in messages} == {f"{ingest.workspace_id}:same"}
    assert len({m.partition for m in messages}) == 1
    assert [Envelope.from_bytes(m.value).payload["event"] for m in messages] == [
        f"E{i}" for i in range(5)
    ]


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


async def test_odd_inputs_get_clear_errors_and_never_sink_the_batch(ingest: Ingest) -> None:
    key = {"writeKey": ingest.write_key}
    for body in ({**key, "batch": 5}, {**key, "batch": True}, {**key, "batch": {"a": 1}}):
        response = await ingest.client.post("/v1/batch", json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["fields"][0]["field"] == "batch"

    too_deep = await ingest.client.post(
        "/v1/track", json={**key, "userId": "u", "event": "E", "properties": nested(300)}
    )
    assert too_deep.status_code == 400
    nul = await ingest.client.post("/v1/track", json={**key, "userId": "u\u0000", "event": "E"})
    assert nul.status_code == 400
    assert "NUL" in nul.json()["error"]["fields"][0]["problem"]
    bell = await ingest.client.post("/v1/track", json={**key, "userId": "u\u0007", "event": "E"})
    assert bell.status_code == 400
    assert bell.json()["error"]["fields"][0]["field"] == "userId"

    batch = {
        **key,
        "batch": [
            {"type": ["track"], "userId": "u"},
            {},
            {"type": "track", "userId": "u", "event": "E", "properties": nested(300)},
            {"type": "track", "userId": "u", "event": "E", "properties": {"note": "a\u0000b"}},
            {
                "type": "track",
                "userId": "u",
                "event": "E",
                "timestamp": "0001-01-01T00:00:00+14:00",
            },
            {"type": "track", "userId": 1e30, "event": "E"},
            {"type": "track", "userId": 42.0, "event": "Kept", "messageId": "kept-1"},
            {
                "type": "track",
                "userId": "u",
                "event": "Kept",
                "messageId": "kept-2",
                "timestamp": "2099-01-01T00:00:00+05:30:15",
            },
        ],
    }
    response = await ingest.client.post("/v1/batch", json=batch)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2
    assert [r["field"].split(".")[0] for r in response.json()["rejected"]] == [
        f"batch[{i}]" for i in range(6)
    ]
    stored = by_id(await ingest.stored(2))
    assert stored["kept-1"].customer_key == "42"
    future = stored["kept-2"]
    assert future.occurred_at == future.received_at, "a far-future time is a broken clock"
    assert future.payload["originalTimestamp"] == "2098-12-31T18:29:45+00:00", "in UTC, exactly"


async def test_batch_level_context_cannot_amplify_a_small_body(ingest: Ingest) -> None:
    body = {
        "writeKey": ingest.write_key,
        "context": {"blob": "x" * 9000},
        "batch": [{"type": "track", "userId": "u", "event": "E"}] * 2500,
    }
    response = await ingest.client.post(
        "/v1/batch", content=gzip.compress(orjson.dumps(body)), headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == "context"


async def test_retried_body_without_message_id_keeps_its_id(ingest: Ingest) -> None:
    call = {
        "writeKey": ingest.write_key,
        "userId": "u",
        "event": "Order Completed",
        "timestamp": "2026-11-20T10:00:00Z",
        "properties": {"order_id": "o-77", "revenue": 5000},
    }
    for _ in range(2):
        assert (await ingest.client.post("/v1/track", json=call)).status_code == 200
    other = {**call, "properties": {"order_id": "o-78", "revenue": 5000}}
    assert (await ingest.client.post("/v1/track", json=other)).status_code == 200
    stored = await ingest.stored(3)
    ids = [e.id for e in stored]
    assert ids[0] == ids[1] != ids[2]
    assert ids[0].startswith("kz-")


async def test_tracking_endpoints_are_documented_and_measured(ingest: Ingest) -> None:
    paths = (await ingest.client.get("/openapi.json")).json()["paths"]
    assert {"/v1/track", "/v1/identify", "/v1/batch", "/v1/sources"} <= set(paths)
    await ingest.client.post(
        "/v1/t", json={"writeKey": ingest.write_key, "userId": "u", "event": "E"}
    )
    metrics = (await ingest.client.get("/metrics")).text
    assert 'route="/v1/t",service="ingest",status="200"' in metrics

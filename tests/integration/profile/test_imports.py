"""Bulk import of customers and orders: bad rows reported with their number, good rows kept,
the same file twice changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tests.integration.profile.conftest import ProfileApi

CUSTOMERS_CSV = b"""user_id,email,first_name,birthday,timezone,plan,email_consent
u-1,hanako@example.jp,Hanako,1990-04-12,Asia/Tokyo,gold,true
u-2,not-an-email,Taro,,,,
u-3,jiro@example.jp,Jiro,12/04/1990,,,
,saburo@example.jp,Saburo,,Europe/Nowhere,,
,shiro@example.jp,Shiro,,,silver,revoked
"""


async def finished(api: ProfileApi, import_id: str) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while True:
            found = await api.client.get(f"/v1/imports/{import_id}", headers=api.admin)
            assert found.status_code == 200
            body: dict[str, Any] = found.json()
            if body["status"] in ("completed", "failed"):
                return body
            await asyncio.sleep(0.1)


async def post(api: ProfileApi, kind: str, body: bytes, content_type: str) -> Any:
    return await api.client.post(
        "/v1/imports",
        params={"kind": kind},
        content=body,
        headers={**api.admin, "Content-Type": content_type},
    )


async def test_customers_csv_with_bad_rows(profile_api: ProfileApi) -> None:
    started = await post(profile_api, "customers", CUSTOMERS_CSV, "text/csv")
    assert started.status_code == 202, started.text
    report = await finished(profile_api, started.json()["id"])
    assert report["status"] == "completed"
    assert (report["rows_total"], report["rows_imported"], report["rows_rejected"]) == (5, 2, 3)
    assert report["rejected"] == [
        {"row": 2, "field": "email", "problem": "is not an email address"},
        {"row": 3, "field": "birthday", "problem": "must be a date (YYYY-MM-DD)"},
        {"row": 4, "field": "timezone", "problem": "must be an IANA time zone such as Asia/Tokyo"},
    ]
    hanako = (await profile_api.client.get("/v1/customers/u-1", headers=profile_api.admin)).json()
    assert hanako["profile"]["first_name"] == "Hanako"
    assert hanako["profile"]["birthday"] == "1990-04-12"
    assert hanako["traits"]["plan"] == "gold"
    assert hanako["consent"]["email"]["status"] == "granted"
    assert hanako["consent"]["email"]["source"] == "import"
    shiro = await profile_api.client.get(
        "/v1/customers", params={"email": "shiro@example.jp"}, headers=profile_api.admin
    )
    [found] = shiro.json()["customers"]
    assert found["consent"]["email"]["status"] == "revoked"

    again = await post(profile_api, "customers", CUSTOMERS_CSV, "text/csv")
    await finished(profile_api, again.json()["id"])
    assert await profile_api.profiles.count("SELECT count(*) FROM profile_customers") == 2
    assert await profile_api.profiles.count("SELECT count(*) FROM profile_events") == 4


async def test_orders_jsonl_count_for_the_customers(profile_api: ProfileApi) -> None:
    lines = [
        {
            "order_id": "h1",
            "user_id": "u-9",
            "ordered_at": "2025-01-10T10:00:00+09:00",
            "total": 5000,
            "currency": "JPY",
        },
        {"order_id": "h2", "user_id": "u-9", "ordered_at": "2025-02-10", "total": "3000"},
        {"order_id": "h3", "email": "Buyer@Example.com", "ordered_at": "2025-03-01", "total": 100},
        {
            "order_id": "h4",
            "user_id": "u-9",
            "ordered_at": "2025-03-02",
            "total": 700,
            "status": "cancelled",
        },
        {"user_id": "u-9", "ordered_at": "2025-01-01", "total": 1},
        {"order_id": "h6", "user_id": "u-9", "ordered_at": "2025-01-01", "total": -5},
        {"order_id": "h7", "user_id": "u-9", "ordered_at": "last week", "total": 5},
        {"order_id": "h8", "user_id": "u-9", "ordered_at": "2025-01-01T10:00:00", "total": 5},
        [1, 2, 3],
    ]
    body = b"\n".join(orjson.dumps(line) for line in lines) + b"\n{broken\n"
    started = await post(profile_api, "orders", body, "application/x-ndjson")
    assert started.status_code == 202, started.text
    report = await finished(profile_api, started.json()["id"])
    assert (report["rows_imported"], report["rows_rejected"]) == (4, 6)
    assert [(r["row"], r["field"]) for r in report["rejected"]] == [
        (5, "order_id"),
        (6, "total"),
        (7, "ordered_at"),
        (8, "ordered_at"),
        (9, "(row)"),
        (10, "(row)"),
    ]
    buyer = (await profile_api.client.get("/v1/customers/u-9", headers=profile_api.admin)).json()
    assert buyer["facts"]["orders_count"] == 3
    assert buyer["facts"]["revenue_total"] == 8000, "the cancelled order counts for nothing"
    assert buyer["facts"]["last_order_at"].startswith("2025-03-02")
    by_email = await profile_api.client.get(
        "/v1/customers", params={"email": "buyer@example.com"}, headers=profile_api.admin
    )
    assert by_email.json()["customers"][0]["facts"]["orders_count"] == 1


async def test_unreadable_files_and_bad_requests(profile_api: ProfileApi) -> None:
    for kind, body, content_type, status in (
        ("customers", b"\xff\xfe not utf-8", "text/csv", 422),
        ("customers", b"", "text/csv", 422),
        ("customers", b"user_id\n", "text/csv", 422),
        ("customers", b"user_id\nu\n", "application/pdf", 422),
        ("shoes", b"user_id\nu\n", "text/csv", 422),
    ):
        refused = await post(profile_api, kind, body, content_type)
        assert refused.status_code == status, (kind, body, refused.text)
        assert refused.json()["error"]["status"] == status
    unknown = await profile_api.client.get("/v1/imports/imp_nope", headers=profile_api.admin)
    assert unknown.status_code == 404
    anonymous = await profile_api.client.post("/v1/imports", params={"kind": "orders"})
    assert anonymous.status_code == 401


async def test_a_file_over_the_limit_is_refused(profile_api: ProfileApi) -> None:
    from kizuna_profile.main import create_app
    from tests.integration.apps import running

    small = profile_api.profiles.settings.model_copy(update={"profile_import_max_bytes": 100})
    async with running(create_app(small)) as client:
        refused = await client.post(
            "/v1/imports",
            params={"kind": "customers"},
            content=b"user_id\n" + b"u\n" * 200,
            headers={**profile_api.admin, "Content-Type": "text/csv"},
        )
    assert refused.status_code == 413

"""The synthetic shop's behaviour model: seeded, realistic, and valid for ingest."""

from __future__ import annotations

import hashlib
import itertools
import os
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from kizuna.orders import amount_of
from kizuna.shop import live, model
from kizuna.shop.sessions import SimEvent
from kizuna_ingest.domain.calls import to_envelope
from kizuna_ingest.handlers import MAX_EVENT_BYTES
from kizuna_journey.scenarios import SCENARIOS
from kizuna_profile.domain.view import valid_timezone
from kizuna_segmenter.domain import rfm

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
SHOP = model.ShopConfig(NOW)  # the defaults: seed 42, 2,000 customers, 730 days


@cache
def history(config: model.ShopConfig = SHOP) -> tuple[SimEvent, ...]:
    return tuple(model.backfill(config))


def encoded(events: Any) -> list[bytes]:
    return [orjson.dumps(event.call) for event in events]


def live_events(config: model.ShopConfig, count: int, rate: float = 10.0) -> list[SimEvent]:
    return list(itertools.islice(live.stream(config, rate), count))


def orders(events: Any) -> list[SimEvent]:
    return [e for e in events if e.call.get("event") == "Order Completed"]


def test_the_same_seed_gives_byte_identical_events() -> None:
    config = model.ShopConfig(NOW, customers=300)
    assert encoded(model.backfill(config)) == encoded(model.backfill(config))
    assert encoded(live_events(config, 3_000)) == encoded(live_events(config, 3_000))


DIGEST = """
import hashlib, itertools, orjson
from datetime import datetime, UTC
from kizuna.shop import live, model
config = model.ShopConfig(datetime(2026, 11, 23, 3, 0, tzinfo=UTC), customers=100)
events = itertools.chain(model.backfill(config), itertools.islice(live.stream(config, 5), 500))
print(hashlib.sha256(b"".join(orjson.dumps(e.call) for e in events)).hexdigest())
"""


def test_the_same_seed_gives_the_same_events_in_another_process() -> None:
    """Nothing depends on hash randomisation, the clock or the machine."""
    digests = {
        subprocess.run(
            [sys.executable, "-c", DIGEST],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "2")
    }
    config = model.ShopConfig(NOW, customers=100)
    events = itertools.chain(model.backfill(config), live_events(config, 500, rate=5))
    here = hashlib.sha256(b"".join(orjson.dumps(e.call) for e in events)).hexdigest()
    assert digests == {here + "\n"}


def test_another_seed_gives_another_shop() -> None:
    one, other = model.ShopConfig(NOW, customers=300), model.ShopConfig(NOW, 7, customers=300)
    assert set(encoded(model.backfill(one))).isdisjoint(encoded(model.backfill(other)))
    assert {c.email for c in model.customers(one)}.isdisjoint(
        c.email for c in model.customers(other)
    )
    assert set(encoded(live_events(one, 500))).isdisjoint(encoded(live_events(other, 500)))


def test_every_event_is_valid_for_ingest() -> None:
    received = NOW + timedelta(seconds=1)
    events = [*history(), *live_events(SHOP, 5_000)]
    ids = set()
    for event in events:
        envelope = to_envelope(event.call, None, "ws_shop", received)  # raises if invalid
        assert len(orjson.dumps(event.call)) < MAX_EVENT_BYTES
        assert envelope.occurred_at == event.at.replace(
            microsecond=event.at.microsecond // 1000 * 1000
        )
        ids.add(envelope.id)
    assert len(ids) == len(events), "every messageId is unique"


def test_history_lies_in_the_window_in_time_order() -> None:
    times = [e.at for e in history()]
    assert times == sorted(times)
    assert SHOP.start <= times[0]
    assert times[-1] < NOW
    assert times[-1] > NOW - timedelta(days=1), "history runs up to now"


def test_customers_mix_names_timezones_locales_and_birthdays_today() -> None:
    customers = model.customers(SHOP)
    japanese = [c for c in customers if c.locale == "ja-JP"]
    assert 0.7 < len(japanese) / len(customers) < 0.9
    assert any(not c.name.isascii() for c in japanese), "Japanese names in Japanese script"
    assert any(c.name.isascii() for c in customers), "and Western ones"
    zones = Counter(c.timezone for c in customers)
    assert zones.most_common(1)[0] == ("Asia/Tokyo", zones["Asia/Tokyo"])
    assert 0.75 < zones["Asia/Tokyo"] / len(customers) < 0.95
    assert len(zones) >= 5
    assert all(valid_timezone(zone) for zone in zones)
    assert len({c.locale for c in customers}) >= 4
    today = [
        c
        for c in customers
        if c.birthday.timetuple()[1:3] == NOW.astimezone(ZoneInfo(c.timezone)).timetuple()[1:3]
    ]
    assert 0.01 < len(today) / len(customers) < 0.04, "some birthdays today, for the journey"
    assert all(c.birthday < NOW.date() - timedelta(days=18 * 365) for c in customers)
    assert len({c.email for c in customers}) == len({c.user_id for c in customers}) == 2_000
    assert Counter(c.email_consent for c in customers).keys() == {"granted", "revoked", "unstated"}


def test_anonymous_browsing_is_identified_with_the_same_anonymous_id() -> None:
    by_anonymous: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in history():
        by_anonymous[event.call["anonymousId"]].append(event.call)
    signed_up = 0
    for calls in by_anonymous.values():
        kinds = [c["type"] for c in calls]
        assert "userId" not in calls[0], "everyone arrives anonymous"
        if "identify" not in kinds:
            assert all("userId" not in c for c in calls)  # visitors who never sign up
            continue
        signed_up += 1
        first = kinds.index("identify")
        identify = calls[first]
        assert identify["userId"]
        assert identify["traits"]["email"]
        assert all("userId" not in c for c in calls[:first])
        assert all(c.get("userId") == identify["userId"] for c in calls[first:])
    assert signed_up == 2_000
    assert len(by_anonymous) == 2_000 + 400, "and 20 % more visitors never sign up"


def test_spend_is_heavy_tailed() -> None:
    revenue: Counter[str] = Counter()
    totals = []
    for event in orders(history()):
        revenue[event.call["userId"]] += event.call["properties"]["total"]
        totals.append(event.call["properties"]["total"])
    ranked = sorted(revenue.values(), reverse=True)
    assert sum(ranked[: len(ranked) // 5]) > 0.5 * sum(ranked), "top 20 % hold most revenue"
    assert statistics.mean(totals) > 1.3 * statistics.median(totals), "order values skew right"
    assert max(totals) > 10 * statistics.median(totals)


def test_recency_and_frequency_spread_over_the_rfm_tiers() -> None:
    """Scored as the segmenter scores (quintiles of a 365-day window), every tier has people."""
    last: dict[str, datetime] = {}
    frequency: Counter[str] = Counter()
    monetary: Counter[str] = Counter()
    for event in orders(history()):
        buyer = event.call["userId"]
        last[buyer] = event.at
        if NOW - event.at <= timedelta(days=365):
            frequency[buyer] += 1
            monetary[buyer] += event.call["properties"]["total"]

    def quintiles(values: list[float]) -> tuple[float, ...]:
        return tuple(statistics.quantiles(values, n=5, method="inclusive"))

    bounds = rfm.Bounds(
        quintiles([rfm.recency_days(at, NOW) for at in last.values()]),
        quintiles([frequency[b] for b in last]),
        quintiles([monetary[b] for b in last]),
        len(last),
    )
    tiers: Counter[str | None] = Counter()
    for buyer, at in last.items():
        scores = rfm.score(rfm.Facts(at, frequency[buyer], monetary[buyer]), bounds, NOW)
        rule = rfm.tier_of(scores)
        tiers[rule.id if rule else None] += 1
    assert len(last) > 1_500, "most customers have bought"
    for tier in ("champions", "loyal", "new", "promising", "at_risk", "hibernating", "lost"):
        assert tiers[tier] >= 0.02 * len(last), (tier, tiers)
    assert len(tiers) >= 9, tiers


def test_carts_are_abandoned_and_orders_follow_checkouts() -> None:
    checkouts = [e for e in history() if e.call.get("event") == "Checkout Started"]
    with_order = {e.call["properties"].get("order_id") for e in checkouts} - {None}
    assert with_order == {e.call["properties"]["order_id"] for e in orders(history())}
    abandoned = [e for e in checkouts if "order_id" not in e.call["properties"]]
    assert 0.05 < len(abandoned) / len(checkouts) < 0.5
    added = Counter(
        e.call["properties"]["cart_id"]
        for e in history()
        if "cart_id" in e.call.get("properties", {})
    )
    assert len(added) > len(with_order), "more carts than orders"


def test_events_carry_what_the_journeys_and_segmenter_read() -> None:
    names = Counter(e.call.get("event") or e.call["type"] for e in history())
    triggers: set[str] = set()
    for make in SCENARIOS.values():
        trigger = make({})["trigger"]
        if trigger["type"] == "event":
            events = trigger["event"]
            triggers |= set(events if isinstance(events, list) else [events])
    assert triggers <= names.keys(), triggers - names.keys()
    for name in ("Seminar Registered", "Order Refunded", "Product Viewed", "page", "identify",
                 "Consent Updated"):  # fmt: skip
        assert names[name] > 0, name
    assert "Email Opened" not in names
    assert "Email Link Clicked" not in names
    for event in orders(history()):
        properties = event.call["properties"]
        assert {"order_id", "total", "revenue", "currency", "products"} <= properties.keys()
        assert float(amount_of(properties) or 0) == properties["total"] > 0
        assert all({"product_id", "name", "price", "quantity", "category", "brand"} <= p.keys()
                   for p in properties["products"])  # fmt: skip
    for event in history():
        properties = event.call.get("properties", {})
        if event.call.get("event") == "Product Added":
            assert {"cart_id", "product_id", "name", "price", "quantity"} <= properties.keys()
        if event.call.get("event") == "Asset Downloaded":
            assert {"asset_id", "asset_title", "asset_topic"} <= properties.keys()


def test_the_live_stream_keeps_its_rate_and_time_order() -> None:
    events = list(
        itertools.takewhile(lambda e: e.at < NOW + timedelta(minutes=10), live.stream(SHOP, 5))
    )
    assert 0.8 * 3_000 < len(events) < 1.2 * 3_000
    times = [e.at for e in events]
    assert times == sorted(times)
    assert times[0] >= NOW
    names = Counter(e.call.get("event") or e.call["type"] for e in events)
    assert {"Order Completed", "Product Added", "Checkout Started", "identify"} <= names.keys()
    backfilled = {e.call["messageId"] for e in history()}
    assert backfilled.isdisjoint(e.call["messageId"] for e in events)
    order_ids = {e.call["properties"]["order_id"] for e in orders(events)}
    assert order_ids.isdisjoint(e.call["properties"]["order_id"] for e in orders(history()))


def test_another_start_time_gives_new_live_events_for_the_same_customers() -> None:
    later = model.ShopConfig(NOW + timedelta(hours=1), customers=300)
    first = live_events(model.ShopConfig(NOW, customers=300), 1_000)
    second = live_events(later, 1_000)
    assert {e.call["messageId"] for e in first}.isdisjoint(e.call["messageId"] for e in second)
    users = {e.call.get("userId") for e in first} & {e.call.get("userId") for e in second}
    assert len(users - {None}) > 10, "returning customers keep their ids"


def test_without_history_live_customers_sign_up_first() -> None:
    config = model.ShopConfig(NOW, customers=50, backfill_days=0)
    assert list(model.backfill(config)) == []
    identified: set[str] = set()
    for event in live_events(config, 2_000):
        if event.call["type"] == "identify":
            identified.add(event.call["userId"])
        elif "userId" in event.call:
            assert event.call["userId"] in identified
    assert len(identified) > 10


def test_consent_is_stated_as_profile_reads_it_right_after_sign_up() -> None:
    consent = {c.user_id: c.email_consent for c in model.customers(SHOP)}
    stated: dict[str, str] = {}
    for event in history():
        if event.call.get("event") == "Consent Updated":
            properties = event.call["properties"]
            assert properties["channel"] == "email"
            stated[event.call["userId"]] = properties["status"]
    assert stated == {user: status for user, status in consent.items() if status != "unstated"}
    subscribers = {e.call["userId"] for e in history()
                   if e.call.get("event") == "Newsletter Subscribed"}  # fmt: skip
    assert subscribers
    assert all(consent[user] == "granted" for user in subscribers)

"""When each customer visits and what they do over the history sent first (the backfill).
Pure and seeded: the same config gives the same events, byte for byte. The live stream that
follows is in ``kizuna.shop.live``."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from kizuna.shop.people import Customer, make_customer, new_uuid
from kizuna.shop.sessions import SimEvent, Visitor, poisson, refund, seminar, visit

HOUR = timedelta(hours=1)
MIN_BACKFILL_DAYS = 1.0
VISITOR_SHARE = 0.2  # anonymous visitors who never sign up, per customer
REFUND_SHARE = 0.03
SEMINAR_SHARE = 0.35  # of downloads


@dataclass(frozen=True)
class ShopConfig:
    now: datetime  # the backfill ends and the live stream starts here
    seed: int = 42
    customers: int = 2_000
    backfill_days: float = 730.0

    @property
    def start(self) -> datetime:
        return self.now - timedelta(days=self.backfill_days)

    @property
    def has_history(self) -> bool:
        return self.backfill_days >= MIN_BACKFILL_DAYS


def customers(config: ShopConfig) -> list[Customer]:
    return [make_customer(config.seed, i, config.now) for i in range(config.customers)]


def _days(value: float) -> timedelta:
    return timedelta(days=value)


def order_times(rng: random.Random, customer: Customer, config: ShopConfig) -> list[datetime]:
    persona, latest = customer.persona, config.now - HOUR
    window = config.backfill_days
    if persona.orders == "none":
        return []
    if persona.orders == "once":  # recent more often: shops keep winning new buyers
        return [latest - (latest - config.start) * rng.random() ** 2]
    if persona.orders == "new":
        first = latest - _days(rng.uniform(0, min(40.0, window - 1 / 24)))
        second = first + _days(rng.uniform(1, 10))
        return [first, second] if rng.random() < 0.3 and second < latest else [first]
    per_day = rng.uniform(*persona.per_year) / 365
    at = config.now - _days(window * rng.uniform(*persona.first_order))
    stop = min(config.now - _days(rng.uniform(*persona.stops)), latest)
    times = [min(at, latest)]
    at += _days(rng.expovariate(per_day))
    while at < stop:
        times.append(at)
        at += _days(rng.expovariate(per_day))
    return times


def _sessions(
    rng: random.Random, customer: Customer, orders: list[datetime], config: ShopConfig
) -> list[tuple[datetime, str, bool]]:
    """(start, kind, signs up) of every visit, in time order."""
    latest = config.now - HOUR
    if orders:
        first_seen = max(config.start, orders[0] - _days(rng.uniform(0, 21)))
        lapsed = customer.persona.stops[0] > 30
        last_active = min(orders[-1] + _days(rng.uniform(0, 30)), latest) if lapsed else latest
    else:
        first_seen = config.start + (latest - config.start) * rng.random()
        last_active = latest

    def some_time() -> datetime:
        return first_seen + (last_active - first_seen) * rng.random()

    visits = [(first_seen, "browse", not orders or rng.random() < 0.5)]
    visits += [(at, "order", False) for at in orders]
    count = len(orders)
    visits += [(some_time(), "browse", False) for _ in range(poisson(rng, 1.5 + 0.3 * count))]
    visits += [(some_time(), "abandon", False) for _ in range(poisson(rng, 0.4 + 0.15 * count))]
    if rng.random() < 0.2:
        visits += [(some_time(), "download", False) for _ in range(1 + (rng.random() < 0.3))]
    return sorted(visits, key=lambda v: v[0])


def _follow_ups(
    rng: random.Random, visitor: Visitor, kind: str, made: list[SimEvent], latest: datetime
) -> list[SimEvent]:
    """A seminar booked after a download, a refund some days after an order."""
    if not made:
        return []
    last = made[-1]
    if kind == "download" and rng.random() < SEMINAR_SHARE:
        at = last.at + _days(rng.uniform(1, 10))
        topic = str(last.call["properties"]["asset_topic"])
        return [seminar(visitor, at, topic)] if at < latest else []
    if kind == "order" and rng.random() < REFUND_SHARE:
        at = last.at + _days(rng.uniform(2, 14))
        back = refund(visitor, at, str(last.call["properties"]["order_id"]))
        return [back] if back is not None and at < latest else []
    return []


def history(config: ShopConfig, customer: Customer) -> list[SimEvent]:
    """One customer's backfill, in time order: anonymous browsing until they sign up (on the
    first visit, at a download or at their first checkout), then orders by their persona,
    browsing, abandoned carts, downloads, seminars and refunds."""
    if not config.has_history:
        return []
    rng = random.Random(f"kizuna-shop:{config.seed}:history:{customer.index}")
    visitor = Visitor(
        customer,
        customer.anonymous_id,
        f"sim-{config.seed}-{customer.index}",
        f"SIM{config.seed}-{customer.index:05d}",
    )
    events: list[SimEvent] = []
    latest, free = config.now - HOUR, config.start
    for at, kind, signs_up in _sessions(rng, customer, order_times(rng, customer, config), config):
        at = max(at, free)  # one visit at a time: a visit that would overlap waits
        if at >= latest and kind in ("browse", "abandon", "download") and events:
            continue  # orders and the first visit are kept: they sign the customer up
        made = visit(rng, visitor, at, kind, signs_up=signs_up)
        free = made[-1].at + timedelta(minutes=1) if made else at
        events += made + _follow_ups(rng, visitor, kind, made, latest)
    return sorted(events, key=lambda e: e.at)


def visitor_history(config: ShopConfig, number: int) -> list[SimEvent]:
    """Someone who looks around, perhaps fills a cart, and never signs up."""
    if not config.has_history:
        return []
    rng = random.Random(f"kizuna-shop:{config.seed}:visitor:{number}")
    visitor = Visitor(None, new_uuid(rng), f"sim-{config.seed}-v{number}", "")
    latest = config.now - HOUR
    events: list[SimEvent] = []
    for _ in range(1 + poisson(rng, 0.5)):
        at = config.start + (latest - config.start) * rng.random()
        events += visit(rng, visitor, at, "abandon" if rng.random() < 0.1 else "browse")
    return sorted(events, key=lambda e: e.at)


def backfill(config: ShopConfig) -> Iterator[SimEvent]:
    """Every customer's and visitor's history, merged in time order."""
    timelines = [history(config, c) for c in customers(config)]
    visitors = round(config.customers * VISITOR_SHARE) if config.has_history else 0
    timelines += [visitor_history(config, n) for n in range(visitors)]
    return heapq.merge(*timelines, key=lambda e: e.at)

"""What one visit to the shop sends: Segment-spec calls with the e-commerce properties the
journeys and the segmenter read. Pure: times and choices come from the caller's
``random.Random``."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kizuna.shop import catalog
from kizuna.shop.people import Customer, new_uuid

Call = dict[str, Any]
LIBRARY = {"name": "kizuna-simulate-shop", "version": "1"}
COUPONS = (("WELCOME10", 0.10), ("CART10", 0.10), ("HBD20", 0.20))
COUPON_SHARE = 0.1


@dataclass(frozen=True)
class SimEvent:
    at: datetime
    call: Call


def iso(at: datetime) -> str:
    """UTC with milliseconds and a Z: 2025-06-01T03:00:00.000Z."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def _weights(customer: Customer | None) -> list[float]:
    """Cumulative weights of the products for this customer: favourite categories four times
    as likely, and dearer products the more affluent they are."""
    favourites = customer.favourites if customer else ()
    bias = 0.4 * math.log(customer.affluence) if customer else 0.0
    return list(
        itertools.accumulate(
            (4.0 if p.category in favourites else 1.0) * (p.price / 3000) ** bias
            for p in catalog.PRODUCTS
        )
    )


def poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means used here."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


@dataclass
class Visitor:
    """One browser of one person (or of an anonymous visitor, ``customer`` None), writing calls
    with its own message-id and order-id prefixes."""

    customer: Customer | None
    anonymous_id: str
    message_prefix: str
    order_prefix: str
    identified: bool = False
    sent: int = 0
    ordered: int = 0
    orders: dict[str, int] = field(default_factory=dict)  # order id → total, for refunds
    weights: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.weights = _weights(self.customer)

    def call(self, at: datetime, kind: str, body: Call) -> SimEvent:
        self.sent += 1
        call: Call = {"type": kind, "messageId": f"{self.message_prefix}-{self.sent}"}
        if self.identified and self.customer is not None:
            call["userId"] = self.customer.user_id
        call.update(anonymousId=self.anonymous_id, timestamp=iso(at), **body)
        context: Call = {"library": LIBRARY}
        if self.customer is not None:
            context.update(
                locale=self.customer.locale,
                timezone=self.customer.timezone,
                userAgent=self.customer.user_agent,
            )
        call["context"] = context
        return SimEvent(at, call)

    def track(self, at: datetime, event: str, properties: Call) -> SimEvent:
        return self.call(at, "track", {"event": event, "properties": properties})


@dataclass
class Visit:
    """The calls of one visit, each a few seconds to minutes after the one before."""

    rng: random.Random
    visitor: Visitor
    at: datetime
    pace: float  # mean seconds between two calls
    events: list[SimEvent] = field(default_factory=list)

    def _next(self) -> datetime:
        self.at += timedelta(seconds=1 + self.rng.expovariate(1 / self.pace))
        return self.at

    def track(self, event: str, properties: Call) -> None:
        self.events.append(self.visitor.track(self._next(), event, properties))

    def landing(self) -> None:
        title, path = self.rng.choice(catalog.PAGES)
        properties = {
            "title": title,
            "path": path,
            "url": f"{catalog.SHOP_URL}{path}",
            "referrer": self.rng.choice(catalog.REFERRERS),
        }
        body = {"name": title, "properties": properties}
        self.events.append(self.visitor.call(self._next(), "page", body))

    def identify(self, newsletter: bool) -> None:
        customer = self.visitor.customer
        if customer is None or self.visitor.identified:
            return
        self.visitor.identified = True
        at = self._next()
        traits = {**customer.traits(), "createdAt": iso(at)}
        self.events.append(self.visitor.call(at, "identify", {"traits": traits}))
        if customer.email_consent != "unstated":  # what profile and the journeys read
            consent = {"channel": "email", "status": customer.email_consent, "source": "signup"}
            self.track("Consent Updated", consent)
        if newsletter and customer.email_consent == "granted":
            source = self.rng.choice(catalog.NEWSLETTER_SOURCES)
            self.track("Newsletter Subscribed", {"list_id": "newsletter", "source": source})

    def pick(self) -> catalog.Product:
        return self.rng.choices(catalog.PRODUCTS, cum_weights=self.visitor.weights)[0]

    def browse(self) -> list[catalog.Product]:
        self.landing()
        seen = [self.pick() for _ in range(1 + poisson(self.rng, 1.0))]
        for product in seen:
            self.track("Product Viewed", product.properties())
        return seen

    def fill_cart(self, seen: list[catalog.Product]) -> list[Call]:
        affluence = self.visitor.customer.affluence if self.visitor.customer else 1.0
        count = 1 + poisson(self.rng, 0.6 * affluence)
        chosen = list(dict.fromkeys([*seen[:count], *(self.pick() for _ in range(count))]))
        cart_id = new_uuid(self.rng)
        items: list[Call] = []
        for product in chosen[:count]:
            quantity = self.rng.choices((1, 2, 3), weights=(75, 20, 5))[0]
            item = {**product.properties(), "quantity": quantity}
            self.track("Product Added", {"cart_id": cart_id, **item})
            items.append(item)
        return items

    def checkout(self, items: list[Call], order_id: str | None) -> None:
        value = sum(int(item["price"]) * int(item["quantity"]) for item in items)
        properties: Call = {"order_id": order_id} if order_id else {}
        properties.update(value=value, revenue=value, currency=catalog.CURRENCY, products=items)
        self.track("Checkout Started", properties)

    def order(self, items: list[Call], order_id: str) -> None:
        subtotal = sum(int(item["price"]) * int(item["quantity"]) for item in items)
        properties: Call = {"order_id": order_id, "checkout_id": f"co-{order_id}"}
        discount = 0
        if self.rng.random() < COUPON_SHARE:
            code, share = self.rng.choice(COUPONS)
            discount = round(subtotal * share)
            properties.update(coupon=code, discount=discount)
        shipping = 0 if subtotal >= catalog.FREE_SHIPPING_FROM else catalog.SHIPPING
        total = subtotal - discount + shipping
        properties.update(
            total=total,
            revenue=subtotal - discount,
            shipping=shipping,
            tax=round(total * 10 / 110),  # consumption tax, included in the prices
            currency=catalog.CURRENCY,
            products=items,
        )
        self.track("Order Completed", properties)
        self.visitor.orders[order_id] = total


def next_order_id(visitor: Visitor) -> str:
    visitor.ordered += 1
    return f"{visitor.order_prefix}-{visitor.ordered:03d}"


def visit(
    rng: random.Random,
    visitor: Visitor,
    at: datetime,
    kind: str,
    *,
    pace: float = 40.0,
    signs_up: bool = False,
) -> list[SimEvent]:
    """``kind``: ``browse``, ``abandon`` (a cart, sometimes a checkout, no order), ``order``
    or ``download`` (a whitepaper behind a form). An anonymous visitor signs up when
    ``signs_up``, on ordering or on downloading."""
    session = Visit(rng, visitor, at, pace)
    seen = session.browse() if kind != "download" else []
    if signs_up:
        session.identify(newsletter=rng.random() < 0.6)
    if kind == "download":
        session.landing()
        session.identify(newsletter=rng.random() < 0.3)
        asset = rng.choice(catalog.ASSETS)
        session.track(
            "Asset Downloaded",
            {"asset_id": asset.asset_id, "asset_title": asset.title, "asset_topic": asset.topic},
        )
    elif kind in ("abandon", "order"):
        items = session.fill_cart(seen)
        order_id = next_order_id(visitor) if kind == "order" else None
        if kind == "order" or rng.random() < 0.4:
            session.identify(newsletter=rng.random() < 0.2)
            session.checkout(items, order_id)
        if order_id is not None:
            session.order(items, order_id)
    return session.events


def seminar(visitor: Visitor, at: datetime, topic: str) -> SimEvent:
    title = catalog.SEMINARS.get(topic, catalog.SEMINARS["gifting"])
    return visitor.track(
        at,
        "Seminar Registered",
        {"seminar_id": f"seminar-{topic}", "seminar_title": title, "seminar_topic": topic},
    )


def refund(visitor: Visitor, at: datetime, order_id: str) -> SimEvent | None:
    total = visitor.orders.get(order_id)
    if total is None:
        return None
    return visitor.track(
        at, "Order Refunded", {"order_id": order_id, "total": total, "currency": catalog.CURRENCY}
    )

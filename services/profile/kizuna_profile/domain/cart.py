"""The current cart, kept as a log of cart events since the last completed order.

The cart is the replay, in event-time order, of the adds, removes and snapshots (a
``Cart Viewed`` or ``Checkout Started`` listing its products) newer than the newest
``Order Completed``. Keeping the log instead of the cart makes arrival order irrelevant: a late
"added" slots into its place. Entries older than the newest snapshot cannot change the cart and
are dropped; at most ``KEPT`` newest entries are kept. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

from kizuna_profile.domain.traits import Stamp

KEPT = 50
Action = Literal["add", "remove", "snapshot"]
ACTIONS: dict[str, Action] = {
    "Product Added": "add",
    "Product Removed": "remove",
    "Cart Viewed": "snapshot",
    "Checkout Started": "snapshot",
}
CART_EVENT_NAMES = frozenset({*ACTIONS, "Order Completed"})
PRODUCT_FIELDS = ("product_id", "sku", "name", "price", "currency", "url", "image_url", "category")


class CartEntry(NamedTuple):
    stamp: Stamp
    action: Action
    products: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class CartLog:
    entries: tuple[CartEntry, ...] = ()
    cleared: Stamp | None = None  # the newest Order Completed


@dataclass(frozen=True)
class Cart:
    items: list[dict[str, Any]] = field(default_factory=list)
    value: float = 0.0
    updated_at: datetime | None = None


def _order(stamp: Stamp) -> tuple[datetime, str]:
    return (stamp.at, stamp.event_id)


def _compact(entries: Iterable[CartEntry], cleared: Stamp | None) -> CartLog:
    unique = {entry.stamp: entry for entry in entries}
    live = [e for e in unique.values() if cleared is None or e.stamp.newer_than(cleared)]
    snapshots = [_order(e.stamp) for e in live if e.action == "snapshot"]
    if snapshots:
        newest_snapshot = max(snapshots)
        live = [e for e in live if _order(e.stamp) >= newest_snapshot]
    live.sort(key=lambda e: _order(e.stamp))
    return CartLog(tuple(live[-KEPT:]), cleared)


def _newest(a: Stamp | None, b: Stamp | None) -> Stamp | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if b.newer_than(a) else a


def merge(left: CartLog, right: CartLog) -> CartLog:
    return _compact((*left.entries, *right.entries), _newest(left.cleared, right.cleared))


def _product(properties: dict[str, Any]) -> dict[str, Any]:
    return {k: properties[k] for k in (*PRODUCT_FIELDS, "quantity") if k in properties}


def observe(log: CartLog, name: str, properties: dict[str, Any], stamp: Stamp) -> CartLog:
    if name == "Order Completed":
        return _compact(log.entries, _newest(log.cleared, stamp))
    action = ACTIONS.get(name)
    if action is None:
        return log
    if action == "snapshot":
        products = properties.get("products")
        if not isinstance(products, list):
            return log  # a cart view that does not list the cart says nothing about it
        listed = tuple(_product(p) for p in products if isinstance(p, dict))
        return _compact((*log.entries, CartEntry(stamp, action, listed)), log.cleared)
    return _compact((*log.entries, CartEntry(stamp, action, (_product(properties),))), log.cleared)


def _key(product: dict[str, Any]) -> str | None:
    for name in ("product_id", "sku"):
        value = product.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            return str(value)
    return None


def _quantity(product: dict[str, Any], default: int) -> int:
    value = product.get("quantity")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return int(value)
    return default


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def current(log: CartLog) -> Cart:
    items: dict[str, dict[str, Any]] = {}
    for entry in log.entries:
        if entry.action == "snapshot":
            items = {}
        for product in entry.products:
            key = _key(product)
            if key is None:
                continue
            if entry.action == "remove":
                held = items.get(key)
                if held is not None:
                    held["quantity"] -= _quantity(product, held["quantity"])
                    if held["quantity"] <= 0:
                        del items[key]
                continue
            held = items.setdefault(key, {"quantity": 0})
            held.update({k: v for k, v in product.items() if k != "quantity"})
            held["quantity"] += _quantity(product, 1)
    listed = [item for item in items.values() if item["quantity"] > 0]
    value = sum(_number(item.get("price")) * item["quantity"] for item in listed)
    updated_at = log.entries[-1].stamp.at if log.entries else None
    if updated_at is None and log.cleared is not None:
        updated_at = log.cleared.at
    return Cart(listed, round(value, 6), updated_at)

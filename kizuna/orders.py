"""What an ``Order Completed`` or ``Order Refunded`` event says about an order: the reading of
the Segment e-commerce spec every service shares (an event contract, not a business rule)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from kizuna.envelope import Envelope

AMOUNT_FIELDS = ("total", "revenue", "value")


@dataclass(frozen=True)
class OrderFact:
    order_id: str
    event_id: str
    at: datetime
    completed: bool  # else a refund
    amount: Decimal | None  # a refund without an amount refunds the whole order
    currency: str | None


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return None
    return number if number.is_finite() else None


def amount_of(properties: dict[str, Any]) -> Decimal | None:
    """``total`` (what the customer paid), else ``revenue``, else ``value``, else the sum of
    the products' price times quantity."""
    for name in AMOUNT_FIELDS:
        amount = _number(properties.get(name))
        if amount is not None:
            return amount
    products = properties.get("products")
    if not isinstance(products, list) or not products:
        return None
    total = Decimal(0)
    for product in products:
        if isinstance(product, dict):
            price = _number(product.get("price")) or Decimal(0)
            quantity = _number(product.get("quantity"))
            total += price * (quantity if quantity is not None else 1)
    return total


def order_fact(event: Envelope) -> OrderFact | None:
    payload = event.payload
    name = payload.get("event")
    if event.type != "track" or name not in ("Order Completed", "Order Refunded"):
        return None
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return None
    order_id = properties.get("order_id")
    if isinstance(order_id, bool) or not isinstance(order_id, str | int) or order_id == "":
        return None
    currency = properties.get("currency")
    amount = amount_of(properties)
    completed = name == "Order Completed"
    return OrderFact(
        order_id=str(order_id),
        event_id=event.id,
        at=event.occurred_at,
        completed=completed,
        amount=(amount or Decimal(0)) if completed else amount,
        currency=currency.upper() if isinstance(currency, str) else None,
    )

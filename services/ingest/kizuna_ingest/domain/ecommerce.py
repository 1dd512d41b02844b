"""Key-field checks for the Segment e-commerce spec events Kizuna scores and acts on."""

from __future__ import annotations

import math
from typing import Any

from kizuna_ingest.domain.errors import InvalidCall

ORDER_EVENTS = frozenset({"Order Completed", "Order Refunded"})
PRODUCT_EVENTS = frozenset({"Product Viewed", "Product Added", "Product Removed"})
CART_EVENTS = frozenset({"Cart Viewed", "Checkout Started"})
SPEC_EVENTS = ORDER_EVENTS | PRODUCT_EVENTS | CART_EVENTS

AMOUNT_FIELDS = ("revenue", "total", "subtotal", "value", "tax", "shipping", "discount", "price")


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _check_amounts(item: dict[str, Any], prefix: str) -> None:
    for name in AMOUNT_FIELDS:
        if name in item and item[name] is not None:
            value = item[name]
            if not _is_number(value):
                raise InvalidCall(f"{prefix}{name}", "must be a number")
            if value < 0 and name != "discount":
                raise InvalidCall(f"{prefix}{name}", "must not be negative")
    quantity = item.get("quantity")
    if quantity is not None and (
        not _is_number(quantity) or quantity < 0 or quantity != int(quantity)
    ):
        raise InvalidCall(f"{prefix}quantity", "must be a whole number, 0 or more")


def _check_identifier(properties: dict[str, Any], name: str) -> None:
    value = properties.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise InvalidCall(f"properties.{name}", "is required (a string or number)")


def validate(event: str, properties: dict[str, Any]) -> None:
    if event not in SPEC_EVENTS:
        return
    if event in ORDER_EVENTS:
        _check_identifier(properties, "order_id")
    currency = properties.get("currency")
    if currency is not None and not (
        isinstance(currency, str) and len(currency) == 3 and currency.isalpha()
    ):
        raise InvalidCall("properties.currency", "must be an ISO 4217 code such as JPY")
    _check_amounts(properties, "properties.")
    products = properties.get("products")
    if products is None:
        return
    if not isinstance(products, list):
        raise InvalidCall("properties.products", "must be a list")
    for index, product in enumerate(products):
        if not isinstance(product, dict):
            raise InvalidCall(f"properties.products[{index}]", "must be an object")
        _check_amounts(product, f"properties.products[{index}].")

"""What a run has sent, as the platform will count it. Pure."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def yen(amount: float) -> str:
    return f"¥{amount:,.0f}"


def name_of(call: dict[str, Any]) -> str:
    """The track event's name, else the call type (identify, page…)."""
    return str(call.get("event") or call.get("type"))


@dataclass
class Tally:
    by_name: Counter[str] = field(default_factory=Counter)
    customers: set[str] = field(default_factory=set)  # userIds in the events
    orders: set[str] = field(default_factory=set)
    buyers: dict[str, int] = field(default_factory=dict)  # userId → orders, latest buyer last
    revenue: float = 0.0  # Σ totals of the orders, less the refunds
    refunds: int = 0

    @property
    def events(self) -> int:
        return sum(self.by_name.values())

    def add(self, call: dict[str, Any]) -> None:
        name = name_of(call)
        self.by_name[name] += 1
        properties = call.get("properties") or {}
        if call.get("userId"):
            self.customers.add(str(call["userId"]))
        if name == "Order Completed" and properties["order_id"] not in self.orders:
            self.orders.add(properties["order_id"])
            self.revenue += properties["total"]
            buyer = str(call.get("userId") or call.get("anonymousId"))
            self.buyers[buyer] = self.buyers.pop(buyer, 0) + 1
        elif name == "Order Refunded":
            self.refunds += 1
            self.revenue -= properties["total"]

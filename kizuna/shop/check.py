"""After a run: does profile have what was sent? Asks its API with the admin key."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import httpx

from kizuna.shop.tally import Tally, yen

CHECK_PATIENCE = 30.0  # seconds without progress in profile before the check gives up
CHECK_SAMPLE = 20  # the latest buyers, whose orders profile reaches last


def _admin(admin_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_key}"}


def profile_totals(
    client: httpx.Client, url: str, admin_key: str, first: date, last: date
) -> tuple[int, int, float]:
    """Customer records, orders and net revenue the workspace holds from ``first`` to ``last``."""
    response = client.get(
        url.rstrip("/") + "/v1/kpis",
        params={"interval": "month", "from": first.isoformat(), "to": last.isoformat()},
        headers=_admin(admin_key),
    )
    response.raise_for_status()
    periods: list[dict[str, Any]] = response.json()["periods"]
    return (
        int(periods[-1]["customers"]) if periods else 0,
        sum(int(p["orders"]) for p in periods),
        sum(float(p["revenue"]) for p in periods),
    )


def behind(client: httpx.Client, url: str, admin_key: str, tally: Tally) -> int:
    """How many of the latest buyers profile does not yet credit with every order sent."""
    late = 0
    for user_id, orders in list(tally.buyers.items())[-CHECK_SAMPLE:]:
        response = client.get(
            f"{url.rstrip('/')}/v1/customers/{user_id}", headers=_admin(admin_key)
        )
        if response.status_code == 404:
            late += 1
            continue
        response.raise_for_status()
        late += int(response.json()["facts"]["orders_count"]) < orders
    return late


def check_profile(
    client: httpx.Client,
    url: str,
    admin_key: str,
    first: date,
    tally: Tally,
    note: Callable[[str], None] = lambda _: None,
) -> str:
    """Waits until profile credits the latest buyers with every order sent (or stops moving
    for CHECK_PATIENCE seconds), then says what the workspace holds."""
    seen: tuple[int, tuple[int, int, float]] | None = None
    moved = time.monotonic()
    try:
        while True:
            late = behind(client, url, admin_key, tally)
            totals = profile_totals(client, url, admin_key, first, datetime.now(UTC).date())
            if not late:
                break
            note(f"profile: {totals[1]:,} orders so far, waiting for the latest buyers")
            if (late, totals) != seen:
                seen, moved = (late, totals), time.monotonic()
            elif time.monotonic() - moved > CHECK_PATIENCE:
                break
            time.sleep(1.0)
    except (httpx.HTTPError, KeyError, ValueError) as error:
        return f"profile ({url}): cannot be read: {error}"
    customers, orders, revenue = totals
    verdict = (
        "the latest orders have arrived"
        if not late
        else f"still catching up ({late} of the latest {CHECK_SAMPLE} buyers incomplete)"
    )
    return (
        f"profile ({url}) holds {customers:,} customer records (anonymous visitors included),"
        f" {orders:,} orders, {yen(revenue)}: {verdict}"
    )

"""Stored events read from profile's API (`GET /v1/events`) with the caller's admin key, as
the envelopes the journey service consumes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import httpx

from kizuna.envelope import Envelope

TIMEOUT_SECONDS = 30.0
PAGE = 5000


class ProfileUnavailable(Exception):
    pass


class TooManyEvents(Exception):
    pass


async def stored_events(
    base_url: str,
    admin_key: str,
    workspace_id: str,
    names: Iterable[str],
    since: datetime,
    until: datetime,
    limit: int,
) -> list[Envelope]:
    params: dict[str, str | int | list[str]] = {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "name": sorted(set(names)),
        "type": "track",
        "limit": PAGE,
    }
    events: list[Envelope] = []
    try:
        async with httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=TIMEOUT_SECONDS,
            headers={"Authorization": f"Bearer {admin_key}"},
        ) as client:
            while True:
                response = await client.get("/v1/events", params=params)
                if response.status_code != 200:
                    raise ProfileUnavailable(
                        f"profile answered {response.status_code}: {response.text[:200]}"
                    )
                body = response.json()
                for item in body["events"]:
                    at = datetime.fromisoformat(item["occurred_at"])
                    events.append(
                        Envelope(
                            id=item["id"],
                            type=item["type"],
                            workspace_id=workspace_id,
                            customer_key=item["customer_id"],
                            occurred_at=at,
                            received_at=at,
                            payload={**item["payload"], "customerId": item["customer_id"]},
                        )
                    )
                if len(events) > limit:
                    raise TooManyEvents(f"more than {limit} events; simulate fewer days")
                if not body.get("next_cursor"):
                    return events
                params["cursor"] = body["next_cursor"]
    except httpx.HTTPError as error:
        raise ProfileUnavailable(f"{type(error).__name__}: {error}") from error

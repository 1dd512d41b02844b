"""The five services served over real HTTP on loopback (uvicorn threads), wired to each other
the way `kizuna dev` wires them."""

from __future__ import annotations

import contextlib
from typing import Any

from kizuna.settings import KizunaSettings
from tests.integration.apps import service_app
from tests.integration.live import served


async def serve_all(
    stack: contextlib.AsyncExitStack,
    base: KizunaSettings,
    journey_stack: contextlib.AsyncExitStack | None = None,
    **notifier: Any,
) -> dict[str, str]:
    """Starts ingest, profile, segmenter, notifier, journey; their URLs by name. ``notifier``
    settings are added to the notifier's (SMTP URL, sender…). The journey service goes on
    ``journey_stack`` when given, so a test can stop and start it again."""
    urls: dict[str, str] = {}
    for name in ("ingest", "profile", "segmenter"):
        urls[name] = await stack.enter_async_context(served(service_app(name, base)))
    urls["notifier"] = await stack.enter_async_context(
        served(
            lambda own_url: service_app(
                "notifier",
                base,
                notifier_tracking_url=urls["ingest"],
                notifier_public_url=own_url,
                notifier_profile_url=urls["profile"],
                notifier_webhook_allowed_networks="127.0.0.0/8",
                **notifier,
            )
        )
    )
    urls["journey"] = await (journey_stack or stack).enter_async_context(
        served(journey_app(base, urls))
    )
    return urls


def journey_app(base: KizunaSettings, urls: dict[str, str]) -> Any:
    return service_app(
        "journey",
        base,
        journey_notifier_url=urls["notifier"],
        journey_profile_url=urls["profile"],
        journey_timer_poll_seconds=0.1,
    )

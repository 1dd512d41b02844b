"""The five services: where each one's app lives and its default port."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    app_factory: str  # "module:function", resolved only when the service is started
    port: int


SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("ingest", "kizuna_ingest.main:create_app", 8001),
        ServiceSpec("profile", "kizuna_profile.main:create_app", 8002),
        ServiceSpec("segmenter", "kizuna_segmenter.main:create_app", 8003),
        ServiceSpec("journey", "kizuna_journey.main:create_app", 8004),
        ServiceSpec("notifier", "kizuna_notifier.main:create_app", 8005),
    )
}

"""Saving a journey asks the notifier (over HTTP, with the caller's admin key) whether the
templates it names exist; a scenario creates its default templates there."""

from __future__ import annotations

from typing import Any

from kizuna.db import create_engine
from kizuna.embedded_pg import free_port
from kizuna_journey.main import create_app as journey_app
from kizuna_journey.scenarios import SCENARIOS
from kizuna_journey.settings import JourneySettings
from kizuna_notifier.main import create_app as notifier_app
from kizuna_notifier.settings import NotifierSettings
from tests.helpers import make_workspace
from tests.integration.apps import running
from tests.integration.live import served

PROMO = {
    "name": "Promo",
    "trigger": {"type": "api"},
    "start": "mail",
    "steps": {"mail": {"type": "send", "channel": "email", "template": "nope"}},
}


async def test_missing_templates_are_refused_and_scenarios_bring_theirs(
    database_url: str, topic_prefix: str
) -> None:
    base: dict[str, Any] = {
        "database_url": database_url,
        "topic_prefix": topic_prefix,
        "log_level": "WARNING",
    }
    engine = create_engine(database_url, pool_size=1)
    _, _, admin = await make_workspace(engine, "shop")
    await engine.dispose()
    headers = {"Authorization": f"Bearer {admin.secret}"}
    async with served(notifier_app(NotifierSettings(**base))) as notifier_url:
        journeys = journey_app(JourneySettings(**base, journey_notifier_url=notifier_url))
        async with running(journeys) as api:
            refused = await api.post("/v1/journeys", json=PROMO, headers=headers)
            assert refused.status_code == 422
            assert refused.json()["error"]["fields"] == [
                {"field": "steps.mail.template", "problem": "no template 'nope' in the notifier"}
            ]
            draft = await api.post(
                "/v1/journeys/from-template/post-purchase", json={"id": "pp"}, headers=headers
            )
            assert draft.status_code == 201, draft.text
            assert "warnings" not in draft.json()
            created = {t["id"]: t["created"] for t in draft.json()["templates"]}
            assert created == {
                "order-thanks": True,
                "review-request": True,
                "replenishment-reminder": True,
            }
            again = await api.post("/v1/journeys/from-template/post-purchase", headers=headers)
            assert not any(t["created"] for t in again.json()["templates"])
            saved = await api.put(
                "/v1/journeys/pp", json=draft.json()["definition"], headers=headers
            )
            assert saved.status_code == 200
            assert "warnings" not in saved.json()
            for name in SCENARIOS:  # every scenario's own templates pass the notifier's checks
                made = await api.post(
                    f"/v1/journeys/from-template/{name}",
                    json={"id": f"s-{name}"},
                    headers=headers,
                )
                assert made.status_code == 201, f"{name}: {made.text}"
    lonely = journey_app(
        JourneySettings(**base, journey_notifier_url=f"http://127.0.0.1:{free_port()}")
    )
    async with running(lonely) as api:
        unchecked = await api.post("/v1/journeys", json=PROMO, headers=headers)
        assert unchecked.status_code == 201
        assert unchecked.json()["warnings"][0].startswith("templates not checked")

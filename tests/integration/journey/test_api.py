"""Bad input gets a clear 4xx naming the field; malformed bus messages go to dead-letter."""

from __future__ import annotations

from kizuna import topics
from kizuna.envelope import Envelope
from tests.helpers import read_topic
from tests.integration.journey.conftest import JourneyApp


async def test_bad_requests_name_the_problem(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    client, admin = app.client, app.admin
    assert (await client.get("/v1/journeys")).status_code == 401
    assert (await client.get("/v1/journeys/nope", headers=admin)).status_code == 404
    unknown = await client.post("/v1/journeys/from-template/nope", headers=admin)
    assert unknown.status_code == 404
    assert "cart-abandonment" in unknown.json()["error"]["message"]
    bad_id = await client.post(
        "/v1/journeys",
        json={
            "id": "Bad Id!",
            "name": "x",
            "trigger": {"type": "api"},
            "start": "a",
            "steps": {"a": {"type": "end"}},
        },
        headers=admin,
    )
    assert bad_id.status_code == 422
    assert bad_id.json()["error"]["fields"][0]["field"] == "id"
    not_json = await client.post(
        "/v1/journeys", content=b"{", headers={**admin, "content-type": "application/json"}
    )
    assert not_json.status_code == 422
    draft = await client.post("/v1/journeys/from-template/vip", json={"id": "vip"}, headers=admin)
    assert draft.status_code == 201
    assert {t["id"] for t in draft.json()["templates"]} == {"vip-early-access"}
    again = await client.post("/v1/journeys/from-template/vip", json={"id": "vip"}, headers=admin)
    assert again.status_code == 409
    draft_enrol = await client.post(
        "/v1/journeys/vip/enrolments", json={"customer_ids": ["c"]}, headers=admin
    )
    assert draft_enrol.status_code == 409
    assert (await client.post("/v1/journeys/vip/pause", headers=admin)).status_code == 409
    empty = await client.post(
        "/v1/journeys/vip/enrolments", json={"customer_ids": []}, headers=admin
    )
    assert empty.status_code == 422
    assert empty.json()["error"]["fields"][0]["field"] == "body.customer_ids"
    zone = await client.put(
        "/v1/delivery-settings", json={"default_timezone": "Mars/Olympus"}, headers=admin
    )
    assert zone.status_code == 422
    hours = await client.put(
        "/v1/delivery-settings",
        json={"quiet_hours": {"start": "25:00", "end": "09:00"}},
        headers=admin,
    )
    assert hours.status_code == 422
    assert hours.json()["error"]["fields"][0]["field"] == "body.quiet_hours.start"
    saved = await client.put(
        "/v1/delivery-settings", json={"frequency_caps": [{"max": 2, "per": "P7D"}]}, headers=admin
    )
    assert saved.json() == {"delivery": {"frequency_caps": [{"max": 2, "per": "P7D"}]}}
    assert (await client.get("/v1/delivery-settings", headers=admin)).json() == saved.json()
    listed = await client.get("/v1/journeys?status=draft", headers=admin)
    assert [j["id"] for j in listed.json()["journeys"]] == ["vip"]


async def test_malformed_lifecycle_event_is_dead_lettered(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    bad = Envelope.new("customer.merged", app.workspace_id, "x", {"absorbed_id": 7})
    await app.bus.publish(topics.CUSTOMER_LIFECYCLE, bad.bus_key, bad.to_bytes())
    [dead] = await read_topic(app.bus, topics.DEAD_LETTER, 1, settle=0.3)
    assert dead.headers["dlq.group"] == "journey-lifecycle"
    assert "absorbed_id" in dead.headers["dlq.reason"]

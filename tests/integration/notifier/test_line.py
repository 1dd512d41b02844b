"""LINE pushes against a real HTTP server on loopback standing in for the Messaging API: the
requests it receives, the retry key that keeps a resend from reaching the user twice, and how
each kind of answer is recorded."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from kizuna import topics
from kizuna.envelope import Envelope
from tests.helpers import read_topic
from tests.integration.live import served
from tests.integration.notifier.conftest import NotifierApp, _app, advance, notifier_settings

TOKEN = "line-channel-token-abcd"


class LineStandIn:
    """Answers a push like LINE does; ``answers[user]`` lists statuses to give first. A push
    answered 500 after being accepted models LINE's "it may have been delivered"."""

    def __init__(self) -> None:
        self.delivered: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.accepted: set[str] = set()
        self.answers: dict[str, list[tuple[int, str]]] = {}
        self.lock = threading.Lock()
        self.app = FastAPI()

        @self.app.post("/v2/bot/message/push")
        async def push(request: Request) -> JSONResponse:
            body = await request.json()
            key = request.headers.get("x-line-retry-key", "")
            with self.lock:
                self.requests.append({"headers": dict(request.headers), "body": body})
                if request.headers.get("authorization") != f"Bearer {TOKEN}":
                    return JSONResponse({"message": "Authentication failed"}, 401)
                if key in self.accepted:
                    return JSONResponse(
                        {"message": "The retry key is already accepted"},
                        409,
                        headers={"x-line-accepted-request-id": f"req-{key[:8]}"},
                    )
                queued = self.answers.get(body["to"], [])
                status, message = queued.pop(0) if queued else (200, "")
                if status == 200 or message == "accepted":
                    self.accepted.add(key)
                    self.delivered.append(body)
                if status == 200:
                    return JSONResponse({}, 200, headers={"x-line-request-id": f"req-{key[:8]}"})
                return JSONResponse({"message": message}, status)


@pytest.fixture
async def line() -> AsyncIterator[tuple[LineStandIn, str]]:
    stand_in = LineStandIn()
    async with served(stand_in.app) as url:
        yield stand_in, url


@pytest.fixture
async def line_app(
    database_url: str, topic_prefix: str, line: tuple[LineStandIn, str]
) -> AsyncIterator[NotifierApp]:
    settings = notifier_settings(
        database_url, topic_prefix, "postgres", notifier_line_api_url=line[1]
    )
    async for app in _app(settings, None):
        yield app


def push(app: NotifierApp, customer: str, user: str | None, **extra: Any) -> Envelope:
    request = app.request(customer, "hello-line", channel="line", **extra)
    traits = dict(request.payload["customer"]["traits"])
    traits.pop("lineUserId", None)
    if user is not None:
        traits["lineUserId"] = user
    request.payload["customer"] = {"traits": traits}
    return request


async def line_template(app: NotifierApp) -> None:
    await app.template(
        "hello-line",
        channel="line",
        text="{{ customer.first_name }}さん、クーポン {{ data.coupon }} をどうぞ",
        messages=None,
    )


async def test_channel_settings_keep_the_token_to_themselves(line_app: NotifierApp) -> None:
    app = line_app
    bad = await app.client.put(
        "/v1/channels/line", json={"access_token": "", "rate_per_second": -1}, headers=app.admin
    )
    assert bad.status_code == 422
    assert {f["field"] for f in bad.json()["error"]["fields"]} == {
        "access_token",
        "rate_per_second",
    }
    bad_from = await app.client.put(
        "/v1/channels/email", json={"from": "nobody"}, headers=app.admin
    )
    assert bad_from.status_code == 422
    assert bad_from.json()["error"]["fields"][0]["field"] == "from"
    unknown = await app.client.put("/v1/channels/fax", json={}, headers=app.admin)
    assert unknown.status_code == 404

    saved = await app.client.put(
        "/v1/channels/line", json={"access_token": TOKEN, "rate_per_second": 50}, headers=app.admin
    )
    assert saved.status_code == 200, saved.text
    shown = (await app.client.get("/v1/channels/line", headers=app.admin)).json()
    assert TOKEN not in str(shown)
    assert shown["access_token_set"] is True
    assert shown["access_token_hint"] == "…abcd"
    assert shown["effective"] == {"rate_per_second": 50.0, "burst": 50}
    listed = (await app.client.get("/v1/channels", headers=app.admin)).json()["channels"]
    assert [c["channel"] for c in listed] == ["email", "line", "webhook"]
    assert listed[0]["effective"]["from"] == "Tea Shop <news@tea.example.com>"
    reset = await app.client.delete("/v1/channels/line", headers=app.admin)
    assert reset.json()["access_token_set"] is False
    assert (await app.client.get("/v1/channels", headers={})).status_code == 401


async def test_pushes_reach_line_once_and_each_answer_is_recorded(
    line_app: NotifierApp, line: tuple[LineStandIn, str]
) -> None:
    app, stand_in = line_app, line[0]
    await line_template(app)
    no_token = push(app, "l0", "U-zero")
    await app.deliver(no_token)
    assert await app.status(no_token.id) == (
        "failed",
        "no LINE channel access token (PUT /v1/channels/line)",
    )
    saved = await app.client.put(
        "/v1/channels/line", json={"access_token": TOKEN}, headers=app.admin
    )
    assert saved.status_code == 200

    stand_in.answers = {
        "U-flaky": [(500, "accepted")],  # accepted, but the answer says otherwise
        "U-busy": [(429, "Too many requests")],
        "U-gone": [(400, "Failed to send messages")],
        "U-bad": [(400, "The request body has 1 error(s)")],
    }
    ok, flaky, busy, gone, bad, nobody = (
        push(app, "l1", "U-ok"),
        push(app, "l2", "U-flaky"),
        push(app, "l3", "U-busy"),
        push(app, "l4", "U-gone"),
        push(app, "l5", "U-bad"),
        push(app, "l6", None),
    )
    await app.deliver(ok, flaky, busy, gone, bad, nobody)
    assert (await app.status(ok.id))[0] == "sent"
    assert (await app.status(flaky.id))[0] == "retrying"
    assert (await app.status(busy.id))[0] == "retrying"
    assert (await app.status(gone.id))[0] == "bounced"
    status, reason = await app.status(bad.id)
    assert status == "failed"
    assert reason is not None
    assert "request body" in reason
    assert await app.status(nobody.id) == ("skipped", "no_address")

    first = next(r for r in stand_in.requests if r["body"]["to"] == "U-ok")
    assert first["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert first["body"]["messages"] == [{"type": "text", "text": "Kenさん、クーポン C10 をどうぞ"}]
    keys = {r["body"]["to"]: r["headers"]["x-line-retry-key"] for r in stand_in.requests}

    advance(app, seconds=61)
    assert await app.delivery.retry_due() == 2
    assert (await app.status(flaky.id))[0] == "sent"
    assert (await app.status(busy.id))[0] == "sent"
    flaky_keys = [
        r["headers"]["x-line-retry-key"] for r in stand_in.requests if r["body"]["to"] == "U-flaky"
    ]
    assert flaky_keys == [keys["U-flaky"]] * 2  # the resend carried the same retry key
    delivered_to = sorted(body["to"] for body in stand_in.delivered)
    assert delivered_to == ["U-busy", "U-flaky", "U-ok"]  # each exactly once

    # the unreachable user's LINE channel is suppressed: the next marketing push is skipped
    again = push(app, "l4", "U-gone")
    await app.deliver(again)
    assert await app.status(again.id) == ("skipped", "suppressed")
    await app.delivery.publish_outbox()
    outcomes = [
        Envelope.from_bytes(m.value)
        for m in await read_topic(app.bus, topics.DELIVERY_OUTCOMES, 7, settle=0.3)
    ]
    kinds = {(o.payload["send_id"], o.type) for o in outcomes}
    assert (gone.id, "delivery.bounced") in kinds
    assert (flaky.id, "delivery.delivered") in kinds
    bounced = next(o for o in outcomes if o.type == "delivery.bounced")
    assert bounced.payload["bounce_type"] == "unreachable"


async def test_a_rich_message_template_is_pushed_as_written(
    line_app: NotifierApp, line: tuple[LineStandIn, str]
) -> None:
    app, stand_in = line_app, line[0]
    await app.client.put("/v1/channels/line", json={"access_token": TOKEN}, headers=app.admin)
    await app.template(
        "hello-line",
        channel="line",
        messages=[
            {"type": "text", "text": "{{ customer.first_name }}さん"},
            {
                "type": "template",
                "altText": "クーポン",
                "template": {
                    "type": "buttons",
                    "text": "{{ data.coupon }}",
                    "actions": [{"type": "uri", "label": "使う", "uri": "https://tea.example"}],
                },
            },
        ],
    )
    request = push(app, "r1", "U-rich")
    await app.deliver(request)
    assert (await app.status(request.id))[0] == "sent"
    messages = stand_in.delivered[0]["messages"]
    assert messages[0] == {"type": "text", "text": "Kenさん"}
    assert messages[1]["template"]["text"] == "C10"

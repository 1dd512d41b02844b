"""The journey's webhook step delivered to a real HTTP receiver on loopback, which verifies
every delivery with the standardwebhooks library."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from standardwebhooks.webhooks import Webhook

from kizuna_notifier.adapters.webhooks import WebhookPoster
from tests.integration.live import served
from tests.integration.notifier.conftest import NotifierApp, advance


class Receiver:
    def __init__(self) -> None:
        self.secret = ""
        self.verified: list[tuple[str, Any]] = []
        self.answers: list[int] = []  # status codes to give before 200
        self.lock = threading.Lock()
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> JSONResponse:
            body = (await request.body()).decode()
            payload = Webhook(self.secret).verify(body, dict(request.headers))
            with self.lock:
                status = self.answers.pop(0) if self.answers else 200
                if status == 200:
                    self.verified.append((request.headers["webhook-id"], payload))
            return JSONResponse({"ok": status == 200}, status_code=status)


async def test_webhook_step_is_signed_retried_and_refused_when_gone(
    notifier_app: NotifierApp,
) -> None:
    app = notifier_app
    receiver = Receiver()
    secret = await app.client.get("/v1/signing-secret", headers=app.admin)
    receiver.secret = secret.json()["secret"]
    assert receiver.secret.startswith("whsec_")
    async with served(receiver.app) as base:
        literal = app.request("w1", None, channel="webhook", url=f"{base}/hook", data={"x": 1})
        await app.deliver(literal)
        assert (await app.status(literal.id))[0] == "sent"
        assert receiver.verified == [(literal.id, {"customer_id": "w1", "data": {"x": 1}})]

        await app.template(
            "crm",
            channel="webhook",
            body={"who": "{{ customer.email }}", "coupon": "{{ data.coupon }}"},
        )
        receiver.answers = [503]
        templated = app.request("w2", "crm", channel="webhook", url=f"{base}/hook")
        await app.deliver(templated)
        assert (await app.status(templated.id))[0] == "retrying"
        advance(app, seconds=61)
        assert await app.delivery.retry_due() == 1
        assert (await app.status(templated.id))[0] == "sent"
        assert receiver.verified[-1] == (templated.id, {"who": "w2@example.com", "coupon": "C10"})

        receiver.answers = [410]
        gone = app.request("w3", None, channel="webhook", url=f"{base}/hook")
        await app.deliver(gone)
        status, reason = await app.status(gone.id)
        assert status == "failed"
        assert reason is not None
        assert reason.startswith("410")

        strict = WebhookPoster(allowed=[])
        refused = await strict.post(f"{base}/hook", "{}", {})
        await strict.close()
        assert refused.verdict == "failed"
        assert "loopback" in refused.detail

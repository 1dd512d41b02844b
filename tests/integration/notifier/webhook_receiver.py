"""A real HTTP receiver on loopback for integration webhooks: it verifies every delivery with
the standardwebhooks library and answers what a test scripts, per path."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Delivery:
    path: str
    webhook_id: str
    payload: Any
    signatures: int
    verified_with: tuple[str, ...]


class WebhookReceiver:
    def __init__(self) -> None:
        self.secrets: dict[str, list[str]] = {}  # path → secrets it accepts
        self.answers: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.received: list[Delivery] = []  # verified and answered 2xx
        self.unverified = 0
        self.lock = threading.Lock()
        self.app = FastAPI()

        @self.app.post("/hook/{path}")
        async def hook(path: str, request: Request) -> JSONResponse:
            body = (await request.body()).decode()
            headers = dict(request.headers)
            verified = []
            payload = None
            for secret in self.secrets.get(path, []):
                try:
                    payload = Webhook(secret).verify(body, headers)
                except WebhookVerificationError:
                    continue
                verified.append(secret)
            with self.lock:
                if not verified:
                    self.unverified += 1
                    return JSONResponse({"error": "signature"}, 401)
                queued = self.answers.get(path, [])
                status, extra = queued.pop(0) if queued else (200, {})
                if 200 <= status < 300:
                    self.received.append(
                        Delivery(
                            path,
                            headers["webhook-id"],
                            payload,
                            len(headers["webhook-signature"].split()),
                            tuple(verified),
                        )
                    )
            return JSONResponse({"status": status}, status, headers=extra)

    def at(self, path: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.received if d.path == path]

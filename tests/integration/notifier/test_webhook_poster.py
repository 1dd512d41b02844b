"""The webhook poster against a real HTTP receiver on loopback: answers, excerpts and
Retry-After, redirects not followed, and the destination check made again when connecting."""

from __future__ import annotations

import asyncio
import ipaddress

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse

from kizuna_notifier.adapters.webhooks import EXCERPT, WebhookPoster
from tests.integration.live import served

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]


def receiver() -> tuple[FastAPI, list[tuple[str, bytes, str]]]:
    app = FastAPI()
    seen: list[tuple[str, bytes, str]] = []

    @app.post("/hook/{path}")
    async def hook(path: str, request: Request) -> PlainTextResponse:
        seen.append((path, await request.body(), request.headers.get("webhook-id", "")))
        if path == "busy":
            return PlainTextResponse("later", 503, headers={"Retry-After": "120"})
        if path == "moved":
            return RedirectResponse("/hook/ok", 307)  # type: ignore[return-value]
        if path == "long":
            return PlainTextResponse("é" * 100_000)
        if path == "slow":
            await asyncio.sleep(2)
        return PlainTextResponse("ok")

    return app, seen


class Rebinding(WebhookPoster):
    """A name that resolved to a public address when checked and to loopback when connected."""

    async def _check(self, hostname: str, port: int) -> str | None:
        return None


async def test_answers_redirects_excerpts_and_timeouts() -> None:
    app, seen = receiver()
    poster = WebhookPoster(LOOPBACK, timeout=0.5, connections=4)
    try:
        async with served(app) as base:
            headers = {"webhook-id": "msg_1", "content-type": "application/json"}
            ok = await poster.attempt(f"{base}/hook/ok", '{"a": 1}', headers)
            assert (ok.status, ok.response, ok.error) == (200, "ok", None)
            assert seen == [("ok", b'{"a": 1}', "msg_1")]

            busy = await poster.attempt(f"{base}/hook/busy", "{}", headers)
            assert (busy.status, busy.response, busy.retry_after) == (503, "later", "120")
            assert (await poster.post(f"{base}/hook/busy", "{}", headers)).verdict == "retry"

            moved = await poster.post(f"{base}/hook/moved", "{}", headers)
            assert moved.verdict == "failed"
            assert moved.detail.startswith("307")
            assert [path for path, _, _ in seen].count("ok") == 1  # not followed

            long = await poster.attempt(f"{base}/hook/long", "{}", headers)
            assert long.status == 200
            assert long.response == "é" * EXCERPT
            again = await poster.attempt(f"{base}/hook/ok", "{}", headers)
            assert again.status == 200  # the unread rest did not spoil the pool

            slow = await poster.attempt(f"{base}/hook/slow", "{}", headers)
            assert slow.status is None
            assert slow.error is not None
            assert "Timeout" in slow.error
            assert (await poster.post(f"{base}/hook/slow", "{}", headers)).verdict == "retry"
    finally:
        await poster.close()


async def test_private_destinations_are_refused_before_posting_and_when_connecting() -> None:
    app, seen = receiver()
    async with served(app) as base:
        port = base.rsplit(":", 1)[1]
        strict = WebhookPoster(allowed=[])
        rebinding = Rebinding(allowed=[])
        allowed = WebhookPoster(LOOPBACK)
        try:
            refused = await strict.attempt(f"http://localhost:{port}/hook/ok", "{}", {})
            assert refused.status is None
            assert refused.error is not None
            assert refused.error.startswith("destination refused: localhost is a private")
            assert await strict.refusal(f"{base}/hook/ok") is not None

            assert await rebinding.refusal(f"http://localhost:{port}/hook/ok") is None
            rebound = await rebinding.attempt(f"http://localhost:{port}/hook/ok", "{}", {})
            assert rebound.status is None
            assert (
                rebound.error
                == "destination refused: localhost is a private, loopback or link-local address"
            )
            assert (
                await rebinding.post(f"http://localhost:{port}/hook/ok", "{}", {})
            ).verdict == "failed"
            assert seen == []

            through = await allowed.attempt(f"http://localhost:{port}/hook/ok", "{}", {})
            assert through.status == 200
            assert len(seen) == 1
        finally:
            for poster in (strict, rebinding, allowed):
                await poster.close()


def test_built_outside_a_running_loop() -> None:
    poster = WebhookPoster(LOOPBACK)  # as a dataclass default_factory does

    async def use() -> None:
        app, seen = receiver()
        async with served(app) as base:
            answer = await poster.attempt(f"{base}/hook/ok", "{}", {})
        await poster.close()
        assert answer.status == 200
        assert len(seen) == 1

    asyncio.run(use())

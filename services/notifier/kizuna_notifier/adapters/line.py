"""LINE push messages over httpx, one client (connections reused) for every workspace."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from kizuna_notifier.adapters.mail import Result
from kizuna_notifier.domain import line


class LinePusher:
    def __init__(self, base_url: str, timeout: float = 10) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout, follow_redirects=False
        )

    async def push(
        self, access_token: str, to: str, messages: list[dict[str, Any]], retry_key: str
    ) -> Result:
        try:
            response = await self.client.post(
                "/v2/bot/message/push",
                content=orjson.dumps({"to": to, "messages": messages}),
                headers={
                    "authorization": f"Bearer {access_token}",
                    "content-type": "application/json",
                    "x-line-retry-key": retry_key,
                },
            )
        except httpx.HTTPError as error:
            # the push may have been accepted: the retry key makes the next attempt harmless
            return Result("retry", f"{type(error).__name__}: {error}"[:500])
        verdict, why = line.verdict(response.status_code, _message(response))
        request_id = response.headers.get("x-line-request-id") or response.headers.get(
            "x-line-accepted-request-id"
        )
        detail = f"{why} (request {request_id})" if request_id else why
        return Result(verdict, detail[:500])

    async def close(self) -> None:
        await self.client.aclose()


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("message", ""))[:200]
    return ""

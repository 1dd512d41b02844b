"""The notifier's templates, seen through its API with the caller's own admin key: which ones a
journey names that do not exist, and creating a scenario's defaults."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

TIMEOUT_SECONDS = 3.0


class Unreachable(Exception):
    """The notifier did not answer (or not as expected): templates cannot be checked."""


class TemplateCatalog:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    async def _get(self, client: httpx.AsyncClient, template_id: str) -> bool:
        response = await client.get(f"{self.base_url}/v1/templates/{template_id}")
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise Unreachable(f"the notifier answered {response.status_code}")
        return True

    async def missing(self, admin_key: str, template_ids: Iterable[str]) -> set[str]:
        wanted = sorted(set(template_ids))
        if not wanted:
            return set()
        try:
            async with self._client(admin_key) as client:
                return {t for t in wanted if not await self._get(client, t)}
        except httpx.HTTPError as error:
            raise Unreachable(f"{type(error).__name__}: {error}") from error

    async def ensure(self, admin_key: str, templates: Iterable[dict[str, Any]]) -> list[str]:
        """Creates the templates that do not exist yet; returns their ids."""
        created = []
        try:
            async with self._client(admin_key) as client:
                for template in templates:
                    body = {k: v for k, v in template.items() if k != "id"}
                    if await self._get(client, template["id"]):
                        continue
                    response = await client.put(
                        f"{self.base_url}/v1/templates/{template['id']}", json=body
                    )
                    if response.status_code != 200:
                        raise Unreachable(
                            f"the notifier refused {template['id']!r}: {response.text}"
                        )
                    created.append(template["id"])
        except httpx.HTTPError as error:
            raise Unreachable(f"{type(error).__name__}: {error}") from error
        return created

    def _client(self, admin_key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=TIMEOUT_SECONDS, headers={"Authorization": f"Bearer {admin_key}"}
        )


def referenced(steps: dict[str, Any]) -> dict[str, str]:
    """template id → the first step that names it."""
    found: dict[str, str] = {}
    for step_id, step in steps.items():
        template = getattr(step, "template", None)
        if isinstance(template, str):
            found.setdefault(template, step_id)
    return found

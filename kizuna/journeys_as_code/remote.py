"""The segmenter's, notifier's and journey service's APIs over HTTP, with the admin key."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from kizuna.journeys_as_code.document import Kind

SERVICE: dict[Kind, str] = {"segments": "segmenter", "templates": "notifier", "journeys": "journey"}
PATH: dict[Kind, str] = {
    "segments": "/v1/segments",
    "templates": "/v1/templates",
    "journeys": "/v1/journeys",
}
TIMEOUT_SECONDS = 30.0
# the segmenter names a bad condition in its message: "conditions.all[0].op: must be …"
REQUEST_INVALID = "the request is not valid"
_PLACE = re.compile(r"^(conditions(?:[.\[][\w.\[\]\-]*)?): (.+)$", re.DOTALL)


@dataclass
class ApiError(Exception):
    service: str
    status: int
    message: str
    fields: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.status:  # no answer
            return f"cannot reach the {self.service} service {self.message}"
        return f"the {self.service} service answered {self.status}: {self.message}"


class Remote:
    def __init__(
        self, urls: Mapping[Kind, str], admin_key: str, client: httpx.Client | None = None
    ) -> None:
        self.urls = {kind: url.rstrip("/") for kind, url in urls.items()}
        self.client = client or httpx.Client(timeout=TIMEOUT_SECONDS)
        self.headers = {"Authorization": f"Bearer {admin_key}"}

    def close(self) -> None:
        self.client.close()

    def get(self, kind: Kind, item_id: str) -> dict[str, Any] | None:
        response = self._call(kind, "GET", f"{PATH[kind]}/{quote(item_id, safe='')}")
        if response.status_code == 404:
            return None
        return self._json(kind, response)

    def list(self, kind: Kind) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._json(kind, self._call(kind, "GET", PATH[kind]))[kind]
        return found

    def save(
        self, kind: Kind, item_id: str, body: dict[str, Any], *, exists: bool
    ) -> dict[str, Any]:
        path = f"{PATH[kind]}/{quote(item_id, safe='')}"
        if kind == "templates":
            return self._json(kind, self._call(kind, "PUT", path, body))
        if exists:
            return self._json(kind, self._call(kind, "PUT", path, body))
        return self._json(kind, self._call(kind, "POST", PATH[kind], {"id": item_id, **body}))

    def move(self, journey_id: str, action: str) -> dict[str, Any]:
        path = f"/v1/journeys/{quote(journey_id, safe='')}/{action}"
        return self._json("journeys", self._call("journeys", "POST", path))

    def _call(
        self, kind: Kind, method: str, path: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        url = self.urls[kind] + path
        try:
            return self.client.request(method, url, json=body, headers=self.headers)
        except httpx.HTTPError as error:
            raise ApiError(SERVICE[kind], 0, f"at {self.urls[kind]}: {error}") from error

    def _json(self, kind: Kind, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_success and isinstance(data, dict):
            return data
        raise error_of(SERVICE[kind], response.status_code, data, response.text)


def error_of(service: str, status: int, data: Any, text: str) -> ApiError:
    """The API's own message and the fields it names, as places in the item."""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ApiError(service, status, text[:500] or "no answer")
    message = str(error.get("message", ""))
    fields = [
        (str(f.get("field", "")), str(f["problem"]))
        for f in error.get("fields") or []
        if isinstance(f, dict) and "problem" in f
    ]
    if message == REQUEST_INVALID:  # FastAPI's own check of the request: body.<field>
        fields = [(_in_body(name), problem) for name, problem in fields]
    place = _PLACE.match(message)
    if not fields and place:
        fields = [(place[1], place[2])]
    return ApiError(service, status, message, fields)


def _in_body(name: str) -> str:
    return "" if name == "body" else name.removeprefix("body.")

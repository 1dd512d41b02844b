"""Posts calls to ingest's ``/v1/batch`` (write key as the Basic user name): batches within
ingest's limits, retries 429 and 5xx answers that invite it (honouring ``Retry-After``), and
counts every other non-2xx answer instead of failing."""

from __future__ import annotations

import email.utils
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from kizuna.shop.tally import Tally

Call = dict[str, Any]
MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 400_000  # ingest takes 500 KB
RETRYABLE = frozenset({429, 502, 503, 504})
MAX_ATTEMPTS = 8
MAX_WAIT = 60.0
_ITEM = re.compile(r"^batch\[(\d+)\]")


class Aborted(Exception):
    """Nothing more can be sent: the key is refused (401, 403) or ingest cannot be reached."""


@dataclass
class SendStats:
    requests: int = 0
    retries: int = 0
    accepted: int = 0
    rejected: int = 0  # items ingest refused inside an accepted batch
    failed: int = 0  # events of batches that were finally not accepted
    errors: Counter[str] = field(default_factory=Counter)  # status code (or "transport") → count
    problems: Counter[str] = field(default_factory=Counter)  # why items were rejected


def batches(calls: Iterable[Call]) -> Iterator[list[tuple[Call, bytes]]]:
    """Consecutive calls, with their JSON, in batches of at most 500 calls and 400 KB."""
    batch: list[tuple[Call, bytes]] = []
    size = 0
    for call in calls:
        encoded = orjson.dumps(call)
        if batch and (len(batch) >= MAX_BATCH_EVENTS or size + len(encoded) > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((call, encoded))
        size += len(encoded) + 1
    if batch:
        yield batch


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def backoff(attempt: int, header: str | None) -> float:
    """The server's Retry-After if it gave one, else 0.5 s doubling; at most a minute."""
    told = retry_after(header)
    return min(told if told is not None else 0.5 * 2**attempt, MAX_WAIT)


class Sender:
    def __init__(
        self,
        client: httpx.Client,
        ingest_url: str,
        write_key: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.client = client
        self.url = ingest_url.rstrip("/") + "/v1/batch"
        self.auth = httpx.BasicAuth(write_key, "")
        self.sleep = sleep
        self.max_attempts = max_attempts
        self.stats = SendStats()
        self.tally = Tally()

    def send(self, calls: Sequence[Call]) -> None:
        for batch in batches(calls):
            self._post(batch)

    def _post(self, batch: list[tuple[Call, bytes]]) -> None:
        body = b'{"batch":[' + b",".join(encoded for _, encoded in batch) + b"]}"
        headers = {"Content-Type": "application/json"}
        for attempt in range(self.max_attempts):
            self.stats.requests += 1
            response: httpx.Response | None = None
            try:
                response = self.client.post(self.url, content=body, headers=headers, auth=self.auth)
            except httpx.TransportError:
                self.stats.errors["transport"] += 1
                header = None
            else:
                if response.is_success:
                    self._accepted(batch, response)
                    return
                self.stats.errors[str(response.status_code)] += 1
                if response.status_code in (401, 403):
                    self.stats.failed += len(batch)
                    raise Aborted(f"ingest refused the write key: {response.text[:200]}")
                if response.status_code not in RETRYABLE:
                    self.stats.failed += len(batch)
                    return
                header = response.headers.get("retry-after")
            if attempt + 1 < self.max_attempts:
                self.stats.retries += 1
                self.sleep(backoff(attempt, header))
        self.stats.failed += len(batch)
        if response is None:  # the last attempt did not get an answer either
            raise Aborted(f"cannot reach ingest at {self.url}")

    def _accepted(self, batch: list[tuple[Call, bytes]], response: httpx.Response) -> None:
        refused: set[int] = set()
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        problems = answer.get("rejected") if isinstance(answer, dict) else None
        for problem in problems if isinstance(problems, list) else []:
            where = str(problem.get("field", "")) if isinstance(problem, dict) else ""
            found = _ITEM.match(where)
            if found:
                refused.add(int(found.group(1)))
                field_name = where[found.end() :].lstrip(".") or "(event)"
                self.stats.problems[f"{field_name} {problem.get('problem')}"] += 1
        for index, (call, _) in enumerate(batch):
            if index not in refused:
                self.tally.add(call)
        self.stats.accepted += len(batch) - len(refused)
        self.stats.rejected += len(refused)

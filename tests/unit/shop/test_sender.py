"""The sender (batches, retries, error counts), the live pacing and where the keys come from."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from kizuna.shop import runner
from kizuna.shop.command import find_key
from kizuna.shop.sender import Aborted, Sender, batches, retry_after
from kizuna.shop.sessions import SimEvent
from kizuna_ingest.handlers import MAX_BATCH_BYTES, MAX_BATCH_EVENTS

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
Handler = Callable[[httpx.Request], httpx.Response]


def order(n: int, total: int = 1000) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"u{n}",
        "messageId": f"m{n}",
        "properties": {"order_id": f"o{n}", "total": total, "currency": "JPY"},
    }


class Ingest:
    """Answers from a script, then 200; records every request."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.answers:
            return self.answers.pop(0)
        return httpx.Response(200, json={"success": True})


def sender_for(handler: Handler, slept: list[float] | None = None) -> Sender:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return Sender(
        client, "http://ingest/", "kz_write_x", sleep=(slept if slept is not None else []).append
    )


def test_batches_stay_within_ingest_limits_and_keep_the_order() -> None:
    calls = [{"type": "page", "anonymousId": "a", "messageId": str(n), "pad": "x" * 3_000}
             for n in range(1_200)]  # fmt: skip
    made = list(batches(calls))
    assert [call for batch in made for call, _ in batch] == calls
    for batch in made:
        assert len(batch) <= MAX_BATCH_EVENTS
        body = b'{"batch":[' + b",".join(encoded for _, encoded in batch) + b"]}"
        assert len(body) < MAX_BATCH_BYTES
    assert len(made) > 1_200 * 3_000 // MAX_BATCH_BYTES
    assert [len(b) for b in batches([order(n) for n in range(1_001)])] == [500, 500, 1]


def test_a_batch_goes_to_v1_batch_with_the_write_key_as_basic_user() -> None:
    ingest = Ingest()
    sender = sender_for(ingest)
    sender.send([order(1), order(2)])
    (request,) = ingest.requests
    assert request.url == "http://ingest/v1/batch"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"kz_write_x:").decode()
    assert orjson.loads(request.content) == {"batch": [order(1), order(2)]}
    assert (sender.stats.accepted, sender.stats.requests) == (2, 1)
    assert sender.tally.orders == {"o1", "o2"}
    assert sender.tally.revenue == 2_000


def test_429_and_503_are_retried_after_what_retry_after_says() -> None:
    ingest = Ingest(
        httpx.Response(429, headers={"Retry-After": "3"}, json={"error": {}}),
        httpx.Response(503, headers={"Retry-After": "5"}, json={"error": {}}),
        httpx.Response(503, json={"error": {}}),
    )
    slept: list[float] = []
    sender = sender_for(ingest, slept)
    sender.send([order(1)])
    assert slept == [3.0, 5.0, 2.0]  # the third: no Retry-After, backoff 0.5 s doubled twice
    assert len(ingest.requests) == 4
    assert len({r.content for r in ingest.requests}) == 1, "the same body, so the same ids"
    stats = sender.stats
    assert (stats.accepted, stats.failed, stats.retries) == (1, 0, 3)
    assert stats.errors == {"429": 1, "503": 2}


def test_a_batch_still_refused_after_every_attempt_is_counted_as_failed() -> None:
    ingest = Ingest(*[httpx.Response(503) for _ in range(20)])
    sender = sender_for(ingest)
    sender.send([order(1), order(2)])
    assert len(ingest.requests) == 8
    assert (sender.stats.failed, sender.stats.accepted, sender.stats.errors["503"]) == (2, 0, 8)
    assert sender.tally.events == 0


def test_other_errors_are_counted_without_retrying_and_an_unreachable_ingest_stops() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    ingest = Ingest(httpx.Response(400, json={"error": {}}), httpx.Response(500))
    sender = sender_for(ingest)
    sender.send([order(1)])
    sender.send([order(2)])
    sender.send([order(3)])
    assert sender.stats.errors == {"400": 1, "500": 1}
    assert (sender.stats.failed, sender.stats.accepted) == (2, 1)
    down = sender_for(broken)
    with pytest.raises(Aborted, match="cannot reach ingest"):
        down.send([order(4)])
    assert down.stats.errors == {"transport": 8}
    assert down.stats.failed == 1


def test_items_ingest_rejects_are_counted_and_left_out_of_the_tally() -> None:
    problem = {"field": "batch[1].properties.order_id", "problem": "is required"}
    answer = {"success": True, "accepted": 2, "rejected": [problem]}
    sender = sender_for(Ingest(httpx.Response(200, json=answer)))
    sender.send([order(1), order(2), order(3)])
    assert (sender.stats.accepted, sender.stats.rejected) == (2, 1)
    assert sender.tally.orders == {"o1", "o3"}
    assert sender.stats.problems == {"properties.order_id is required": 1}


def test_a_refused_write_key_stops_the_run() -> None:
    sender = sender_for(Ingest(httpx.Response(401, json={"error": {"message": "unknown"}})))
    with pytest.raises(Aborted, match="refused the write key"):
        sender.send([order(1)])
    assert sender.stats.failed == 1


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("7") == 7.0
    assert retry_after("Mon, 23 Nov 2026 03:00:10 GMT", NOW) == 10.0
    assert retry_after("soon") is None
    assert retry_after(None) is None


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


def test_live_events_are_sent_when_their_time_comes_in_batches_of_a_second() -> None:
    time = FakeTime()
    sent: list[tuple[float, list[str]]] = []

    def send(calls: list[dict[str, Any]]) -> None:
        sent.append((time.now - 100.0, [c["messageId"] for c in calls]))

    offsets = (0.0, 0.2, 0.4, 1.5, 1.6, 4.0, 9.5, 12.0)

    def events() -> Iterator[SimEvent]:
        for n, offset in enumerate(offsets):
            yield SimEvent(NOW + timedelta(seconds=offset), {"messageId": str(n)})

    runner.send_live(events(), send, origin=NOW, duration=10, clock=time.clock, sleep=time.sleep)
    assert sent == [(1.0, ["0", "1", "2"]), (2.0, ["3", "4"]), (4.0, ["5"]), (9.5, ["6"])]
    for at, ids in sent:  # never early, at most a second late
        assert all(offsets[int(n)] <= at <= offsets[int(n)] + 1.0 for n in ids)
    assert time.now - 100.0 == 9.5, "the event due after the duration is never waited for"


def test_the_backfill_goes_out_in_full_batches() -> None:
    sent: list[int] = []
    events = [SimEvent(NOW, {"messageId": str(n)}) for n in range(1_234)]
    runner.send_backfill(events, lambda calls: sent.append(len(calls)))
    assert sent == [500, 500, 234]


def test_keys_come_from_the_option_then_the_environment_then_kizuna_dev(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIZUNA_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("KIZUNA_WRITE_KEY", raising=False)
    monkeypatch.delenv("KIZUNA_ADMIN_KEY", raising=False)
    assert find_key("write", None) is None
    (tmp_path / "credentials.json").write_text(
        json.dumps({"write_key": "kz_write_dev", "admin_key": "kz_admin_dev"})
    )
    assert (find_key("write", None), find_key("admin", None)) == ("kz_write_dev", "kz_admin_dev")
    monkeypatch.setenv("KIZUNA_WRITE_KEY", "kz_write_env")
    assert find_key("write", None) == "kz_write_env"
    assert find_key("write", "kz_write_given") == "kz_write_given"

"""Opens, clicks and downloads through signed tokens, over real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kizuna import topics
from kizuna.bus.factory import bus_from_settings
from kizuna.envelope import Envelope
from kizuna.tracking_tokens import TokenKind, TrackingToken, sign
from kizuna_ingest import metrics
from kizuna_ingest.main import create_app
from kizuna_ingest.settings import IngestSettings
from kizuna_ingest.tracking import PIXEL
from tests.helpers import read_topic
from tests.integration.live import serving

SECRET = "link-secret"
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36"


def token(kind: TokenKind, **overrides: object) -> str:
    fields: dict[str, object] = {
        "kind": kind,
        "workspace_id": "ws_links",
        "customer_id": "cus_7",
        "message_id": "send_42",
        "expires_at": int(time.time()) + 3600,
        "destination": None if kind == "open" else "https://shop.example/sale",
        "delivered_at": time.time() - 3600,
    }
    if kind == "download":
        fields["asset"] = {"id": "wp-1", "title": "RFM whitepaper", "topic": "crm"}
    fields.update(overrides)
    return sign(TrackingToken(**fields), SECRET)  # type: ignore[arg-type]


@pytest.fixture
def live(database_url: str) -> Iterator[tuple[httpx.Client, IngestSettings]]:
    settings = IngestSettings(
        database_url=database_url,
        bus_url="postgres",
        bus_partitions=2,
        secret_key=SECRET,
        log_level="WARNING",
        log_format="console",
    )
    with serving(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        yield client, settings


def recorded(settings: IngestSettings, at_least: int) -> list[Envelope]:
    async def read() -> list[Envelope]:
        bus = bus_from_settings(settings)
        await bus.start()
        try:
            messages = await read_topic(bus, topics.RAW_EVENTS, at_least, settle=0.5)
        finally:
            await bus.close()
        return [Envelope.from_bytes(m.value) for m in messages]

    return asyncio.run(read())


def test_open_click_and_download_are_recorded(live: tuple[httpx.Client, IngestSettings]) -> None:
    client, settings = live
    opened = client.get(f"/t/o/{token('open')}.gif", headers={"User-Agent": BROWSER})
    assert opened.status_code == 200
    assert opened.content == PIXEL
    assert opened.headers["content-type"] == "image/gif"
    assert "no-store" in opened.headers["cache-control"]

    clicked = client.get(f"/t/c/{token('click')}", headers={"User-Agent": BROWSER})
    assert clicked.status_code == 302
    assert clicked.headers["location"] == "https://shop.example/sale"

    scanned = client.get(
        f"/t/c/{token('click', delivered_at=time.time() + 5)}", headers={"User-Agent": BROWSER}
    )
    assert scanned.status_code == 302

    downloaded = client.get(f"/t/d/{token('download')}", headers={"User-Agent": BROWSER})
    assert downloaded.status_code == 302

    events = recorded(settings, 4)
    assert len(events) == 4
    names = [e.payload["event"] for e in events]
    assert sorted(names) == sorted(
        ["Email Opened", "Email Link Clicked", "Email Link Clicked", "Asset Downloaded"]
    )
    for event in events:
        assert (event.workspace_id, event.customer_key) == ("ws_links", "cus_7")
        assert event.payload["properties"]["message_id"] == "send_42"
    flagged = [e for e in events if e.payload["properties"]["machine_suspected"]]
    assert len(flagged) == 1
    assert "within" in flagged[0].payload["properties"]["machine_reason"]
    download = next(e for e in events if e.payload["event"] == "Asset Downloaded")
    assert download.payload["properties"]["asset_title"] == "RFM whitepaper"


def test_expired_and_cross_kind_tokens_are_refused(
    live: tuple[httpx.Client, IngestSettings],
) -> None:
    client, settings = live
    expired = client.get(f"/t/c/{token('click', expires_at=int(time.time()) - 1)}")
    assert expired.status_code == 404
    assert "location" not in expired.headers
    pixel_as_link = client.get(f"/t/c/{token('open')}")
    assert pixel_as_link.status_code == 400
    click_as_download = client.get(f"/t/d/{token('click')}")
    assert click_as_download.status_code == 400
    valid = client.get(f"/t/o/{token('open')}.gif")
    assert valid.status_code == 200
    assert len(recorded(settings, 1)) == 1, "only the valid open was recorded"


TAMPERINGS = st.one_of(
    st.tuples(st.just("flip"), st.integers(min_value=0), st.sampled_from("AaZz09-_.=~")),
    st.tuples(st.just("truncate"), st.integers(min_value=1, max_value=200), st.just("")),
    st.tuples(st.just("append"), st.just(0), st.text("AZaz09-_.=", min_size=1, max_size=5)),
    st.tuples(st.just("junk"), st.just(0), st.text("AZaz09-_.", max_size=120)),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tampering=TAMPERINGS, kind=st.sampled_from(["click", "download", "open"]))
def test_every_tampered_token_is_rejected_and_never_recorded(
    live: tuple[httpx.Client, IngestSettings], tampering: tuple[str, int, str], kind: TokenKind
) -> None:
    client, _ = live
    original = token(kind, destination=None if kind == "open" else "https://shop.example/x")
    how, position, text = tampering
    if how == "flip":
        index = position % len(original)
        tampered = original[:index] + text + original[index + 1 :]
    elif how == "truncate":
        tampered = original[: max(0, len(original) - position)]
    elif how == "append":
        tampered = original + text
    else:
        tampered = text
    if tampered == original or not tampered or (tampered.startswith(".") and kind == "open"):
        return
    path = {
        "open": f"/t/o/{tampered}.gif",
        "click": f"/t/c/{tampered}",
        "download": f"/t/d/{tampered}",
    }[kind]
    published_before = events_published()
    response = client.get(path)
    assert response.status_code in (400, 404, 405), (tampered, response.status_code)
    assert "location" not in response.headers
    assert response.content != PIXEL
    assert events_published() == published_before, "a tampered token was recorded"


def events_published() -> float:
    """Events ingest has stored on the bus (the server runs in this process)."""
    return sum(
        sample.value
        for metric in metrics.ACCEPTED.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def test_tampering_left_nothing_on_the_bus(live: tuple[httpx.Client, IngestSettings]) -> None:
    client, settings = live
    for kind, good in (("click", token("click")), ("open", token("open"))):
        bad = good[:-2] + ("AA" if good[-2:] != "AA" else "BB")
        path = f"/t/c/{bad}" if kind == "click" else f"/t/o/{bad}.gif"
        assert client.get(path).status_code == 400
    before = events_published()
    client.get(f"/t/c/{token('click')}")
    assert events_published() == before + 1, "the valid click moves the counter"
    events = recorded(settings, 1)
    assert len(events) == 1

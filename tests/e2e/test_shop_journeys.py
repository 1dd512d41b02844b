"""The five services together on real Kafka and PostgreSQL, a real SMTP server and a real
webhook receiver, driven only through the public APIs the way a shop uses them:

- cart abandonment: an anonymous visitor checks out, signs up, does not buy → exactly one
  reminder with the cart's items at the signed-up address; a buyer gets none; the tracked
  link in the mail resolves through ingest and lands on the timeline;
- RFM: a burst of purchases makes a customer a champion and a signed `segment.entered`
  webhook arrives;
- unsubscribe: the one-click unsubscribe of a received mail stops later marketing mail."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from kizuna.db import create_engine
from kizuna.settings import KizunaSettings
from tests.helpers import make_workspace
from tests.integration.live import served
from tests.integration.notifier.conftest import Inbox
from tests.integration.notifier.webhook_receiver import WebhookReceiver
from tests.integration.platform import journey_app, serve_all

pytestmark = pytest.mark.kafka


@dataclass
class Shop:
    urls: dict[str, str]
    write_key: str
    admin_key: str
    inbox: Inbox
    hooks: WebhookReceiver
    hooks_url: str
    journey_app: Callable[[], Any]
    journey_stack: contextlib.AsyncExitStack

    async def restart_journey(self) -> None:
        """Stops the journey service and starts a fresh process of it on the same database."""
        await self.journey_stack.aclose()
        self.journey_stack = contextlib.AsyncExitStack()
        self.urls["journey"] = await self.journey_stack.enter_async_context(
            served(self.journey_app())
        )

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    async def track(self, *calls: dict[str, Any]) -> None:
        batch = [
            {"messageId": str(uuid.uuid4()), "timestamp": datetime.now(UTC).isoformat(), **c}
            for c in calls
        ]
        auth = base64.b64encode(f"{self.write_key}:".encode()).decode()
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{self.urls['ingest']}/v1/batch",
                json={"batch": batch},
                headers={"Authorization": f"Basic {auth}"},
            )
        assert response.status_code == 200, response.text

    async def call(self, service: str, method: str, path: str, **kw: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.urls[service], headers=self.admin) as client:
            return await client.request(method, path, **kw)

    def mail_to(self, address: str) -> list[Any]:
        return [m for m in self.inbox.received() if m["To"] == address]


async def eventually(condition: Callable[[], Any], timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.1)


@pytest.fixture
async def shop(
    database_url: str, topic_prefix: str, kafka_bootstrap: str, smtp: tuple[Inbox, int]
) -> AsyncIterator[Shop]:
    inbox, smtp_port = smtp
    engine = create_engine(database_url, pool_size=1)
    _, write, admin = await make_workspace(engine, "tea-shop")
    await engine.dispose()
    hooks = WebhookReceiver()
    base = KizunaSettings(
        database_url=database_url,
        bus_url=f"kafka://{kafka_bootstrap}",
        topic_prefix=topic_prefix,
        bus_partitions=2,
        log_level="WARNING",
        log_format="console",
        secret_key="e2e-secret-" + "k" * 40,
    )
    async with contextlib.AsyncExitStack() as stack:
        hooks_url = await stack.enter_async_context(served(hooks.app))
        journeys = contextlib.AsyncExitStack()
        urls = await serve_all(
            stack,
            base,
            journeys,
            notifier_smtp_url=f"smtp://127.0.0.1:{smtp_port}",
            notifier_from="Tea Shop <news@tea.example>",
        )

        def make_journey() -> Any:
            return journey_app(base, urls)

        shop = Shop(
            urls, write.secret, admin.secret, inbox, hooks, hooks_url, make_journey, journeys
        )
        try:
            yield shop
        finally:
            await shop.journey_stack.aclose()


async def test_a_shop_through_the_whole_pipeline(shop: Shop) -> None:
    reminder = await shop.call(
        "notifier",
        "PUT",
        "/v1/templates/cart-reminder",
        json={
            "channel": "email",
            "subject": "{{ customer.first_name }}, your cart is waiting",
            "html": "<p>{% for p in data.properties.products %}{{ p.name }} {% endfor %}</p>"
            '<a href="https://tea.example/cart">Back to your cart</a>',
            "text": "{% for p in data.properties.products %}{{ p.name }} {% endfor %}",
        },
    )
    assert reminder.status_code == 200, reminder.text
    created = await shop.call(
        "journey",
        "POST",
        "/v1/journeys/from-template/cart-abandonment",
        json={
            "id": "cart",
            "options": {"event": "Checkout Started", "first_wait": "PT4S", "holdout_percent": 0},
        },
    )
    assert created.status_code == 201, created.text
    assert (await shop.call("journey", "POST", "/v1/journeys/cart/activate")).status_code == 200

    cart = {"products": [{"product_id": "sencha", "name": "Sencha", "price": 1200}]}
    await shop.track(
        {"type": "page", "anonymousId": "anon-ken", "name": "Tea"},
        {
            "type": "track",
            "anonymousId": "anon-ken",
            "event": "Checkout Started",
            "properties": cart,
        },
        {
            "type": "identify",
            "anonymousId": "anon-ken",
            "userId": "ken",
            "traits": {"email": "ken@example.com", "first_name": "Ken"},
        },
        {"type": "identify", "userId": "yui", "traits": {"email": "yui@example.com"}},
        {"type": "track", "userId": "yui", "event": "Checkout Started", "properties": cart},
    )
    await asyncio.sleep(1)
    await shop.track(
        {"type": "track", "userId": "yui", "event": "Order Completed",
         "properties": {"order_id": "y1", "total": 1200, "currency": "JPY"}},
    )  # fmt: skip

    async def reminded() -> bool:
        return len(shop.mail_to("ken@example.com")) == 1

    await eventually(reminded)
    await asyncio.sleep(6)  # well past Yui's wait too
    (mail,) = shop.mail_to("ken@example.com")
    assert shop.mail_to("yui@example.com") == [], "the buyer got no reminder"
    assert mail["Subject"] == "Ken, your cart is waiting"
    html = mail.get_body(("html",)).get_content()
    assert "Sencha" in html
    tracked = re.search(r'href="([^"]+/t/c/[^"]+)"', html)
    assert tracked is not None, html
    async with httpx.AsyncClient() as client:
        clicked = await client.get(tracked.group(1).replace("&amp;", "&"))
    assert clicked.status_code in (302, 303, 307)
    assert clicked.headers["location"] == "https://tea.example/cart"

    async def click_recorded() -> bool:
        timeline = await shop.call(
            "profile", "GET", "/v1/customers/ken/events", params={"name": "Email Link Clicked"}
        )
        return timeline.status_code == 200 and len(timeline.json()["events"]) == 1

    await eventually(click_recorded)

    # RFM: five orders in a row make a champion; integrations hear of it, signed
    endpoint = await shop.call(
        "notifier",
        "POST",
        "/v1/webhook-endpoints",
        json={"url": f"{shop.hooks_url}/hook/crm", "event_types": ["segment.entered"]},
    )
    assert endpoint.status_code == 201, endpoint.text
    shop.hooks.secrets["crm"] = [endpoint.json()["secret"]]
    await shop.track(
        *(
            {"type": "track", "userId": "mei", "event": "Order Completed",
             "properties": {"order_id": f"m{i}", "total": 5000 + i, "currency": "JPY"}}
            for i in range(5)
        )
    )  # fmt: skip

    async def champion() -> bool:
        return any(d.payload["data"].get("segment_id") == "champions" for d in shop.hooks.at("crm"))

    await eventually(champion)
    assert shop.hooks.unverified == 0

    # one-click unsubscribe from Ken's mail stops later marketing mail to him
    one_click = mail["List-Unsubscribe"].strip("<>")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    async with httpx.AsyncClient() as client:
        done = await client.post(one_click, content=b"List-Unsubscribe=One-Click")
    assert done.status_code == 200, done.text
    promo = await shop.call(
        "journey",
        "POST",
        "/v1/journeys",
        json={
            "id": "promo",
            "name": "Promo",
            "trigger": {"type": "event", "event": "Product Viewed"},
            "start": "mail",
            "steps": {"mail": {"type": "send", "channel": "email", "template": "cart-reminder"}},
        },
    )
    assert promo.status_code == 201, promo.text
    await shop.call("journey", "POST", "/v1/journeys/promo/activate")

    async def consent_known() -> bool:
        found = await shop.call("profile", "GET", "/v1/customers/ken")
        return (
            found.status_code == 200
            and found.json().get("consent", {}).get("email", {}).get("status") == "revoked"
        )

    await eventually(consent_known)
    await asyncio.sleep(1)
    await shop.track(
        {"type": "track", "userId": "ken", "event": "Product Viewed", "properties": cart},
        {"type": "track", "userId": "yui", "event": "Product Viewed", "properties": cart},
    )

    async def yui_promoted() -> bool:
        return len(shop.mail_to("yui@example.com")) == 1

    await eventually(yui_promoted)
    await asyncio.sleep(2)
    assert len(shop.mail_to("ken@example.com")) == 1, "no marketing after the unsubscribe"


async def test_birthdays_come_once_at_local_time_and_dormant_customers_are_won_back(
    shop: Shop,
) -> None:
    for template, subject in (
        ("birthday-coupon", "Happy birthday"),
        ("winback-coupon", "We miss you"),
    ):
        saved = await shop.call(
            "notifier", "PUT", f"/v1/templates/{template}",
            json={"channel": "email", "subject": subject, "text": "{{ data.coupon }}"},
        )  # fmt: skip
        assert saved.status_code == 200, saved.text
    tokyo = ZoneInfo("Asia/Tokyo")
    local = datetime.now(tokyo) + timedelta(minutes=1, seconds=30)
    at = local.strftime("%H:%M")
    today = local.date()
    await shop.track(
        {"type": "identify", "userId": "aoi",
         "traits": {"email": "aoi@example.com", "birthday": f"1994-{today:%m-%d}",
                    "timezone": "Asia/Tokyo"}},
        {"type": "identify", "userId": "sora",
         "traits": {"email": "sora@example.com", "birthday": "1994-01-01" if today.month != 1
                    else "1994-07-01", "timezone": "Asia/Tokyo"}},
    )  # fmt: skip
    created = await shop.call(
        "journey",
        "POST",
        "/v1/journeys",
        json={
            "id": "birthday",
            "name": "Birthday",
            "trigger": {"type": "date", "trait": "birthday", "at": at, "spread": "PT1S"},
            "start": "coupon",
            "steps": {"coupon": {"type": "send", "channel": "email",
                                 "template": "birthday-coupon", "data": {"coupon": "HBD20"}}},
        },
    )  # fmt: skip
    assert created.status_code == 201, created.text

    async def traits_known() -> bool:
        found = await shop.call("profile", "GET", "/v1/customers/aoi")
        return found.status_code == 200

    await eventually(traits_known)
    await asyncio.sleep(2)  # the journey service has seen the identify too
    assert (await shop.call("journey", "POST", "/v1/journeys/birthday/activate")).status_code == 200

    # dormant: one customer's last order 100 days ago, another's last week (backfilled)
    now = datetime.now(UTC)
    orders = "order_id,email,ordered_at,total\n" + "\n".join(
        [
            f"d1,rin@example.com,{(now - timedelta(days=100)).isoformat()},4000",
            f"d2,kai@example.com,{(now - timedelta(days=7)).isoformat()},4000",
        ]
    )
    customers = "email,first_name\nrin@example.com,Rin\nkai@example.com,Kai\n"
    for kind, body in (("customers", customers), ("orders", orders)):
        started = await shop.call(
            "profile", "POST", f"/v1/imports?kind={kind}", content=body.encode(),
            headers={"Content-Type": "text/csv"},
        )  # fmt: skip
        assert started.status_code == 202, started.text
        status_url = started.json()["status_url"]

        async def imported(url: str = status_url) -> bool:
            answer = await shop.call("profile", "GET", url)
            return bool(answer.json()["status"] == "completed")

        await eventually(imported)
    await asyncio.sleep(2)
    winback = await shop.call(
        "journey",
        "POST",
        "/v1/journeys/from-template/dormant-reactivation",
        json={"id": "winback", "options": {"via": "inactivity", "days": 90, "holdout_percent": 0}},
    )
    assert winback.status_code == 201, winback.text
    assert (await shop.call("journey", "POST", "/v1/journeys/winback/activate")).status_code == 200

    async def won_back() -> bool:
        return len(shop.mail_to("rin@example.com")) == 1

    await eventually(won_back)

    async def birthday_sent() -> bool:
        return len(shop.mail_to("aoi@example.com")) == 1

    await eventually(birthday_sent, timeout=180)
    runs = (await shop.call("journey", "GET", "/v1/journeys/birthday/runs")).json()["runs"]
    (run,) = runs
    detail = (await shop.call("journey", "GET", f"/v1/runs/{run['run_id']}")).json()
    sent = next(s for s in detail["steps"] if s["outcome"] == "sent")
    sent_local = datetime.fromisoformat(sent["at"]).astimezone(tokyo)
    due = local.replace(second=0, microsecond=0)
    assert due <= sent_local < due + timedelta(minutes=1), "at the configured local time"
    await shop.restart_journey()
    await asyncio.sleep(5)
    assert len(shop.mail_to("aoi@example.com")) == 1, "once, across a restart"
    assert shop.mail_to("sora@example.com") == [], "not her birthday"
    assert shop.mail_to("kai@example.com") == [], "ordered last week"
    assert len(shop.mail_to("rin@example.com")) == 1

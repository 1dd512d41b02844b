from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from kizuna import topics
from kizuna.bus import Bus, OutgoingMessage
from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna.embedded_pg import free_port
from kizuna.envelope import Envelope
from kizuna_notifier.delivery import Delivery
from kizuna_notifier.main import create_app
from kizuna_notifier.settings import NotifierSettings
from tests.helpers import FakeClock, make_workspace
from tests.integration.apps import running

T0 = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
SECRET = "n" * 40
_ids = itertools.count(1)


class Inbox:
    """A real SMTP server on loopback: keeps every message; refuses some recipients."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()
        self.temporary_failures: dict[str, int] = {}  # address → 451s still to give

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("bounce"):
            return "550 5.1.1 no such user"
        with self.lock:
            left = self.temporary_failures.get(address, 0)
            if left:
                self.temporary_failures[address] = left - 1
                return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted"

    def received(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.messages)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@dataclass
class NotifierApp:
    client: httpx.AsyncClient
    app_state: Any
    workspace_id: str
    admin_key: str
    bus: Bus
    clock: FakeClock
    settings: NotifierSettings
    inbox: Inbox | None
    sent: list[str] = field(default_factory=list)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    @property
    def delivery(self) -> Delivery:
        delivery: Delivery = self.app_state.delivery
        return delivery

    async def template(self, template_id: str, **body: Any) -> None:
        response = await self.client.put(
            f"/v1/templates/{template_id}", json={"channel": "email", **body}, headers=self.admin
        )
        assert response.status_code == 200, response.text

    def request(
        self,
        customer: str,
        template: str | None,
        *,
        email_address: str | None = None,
        **extra: Any,
    ) -> Envelope:
        send_id = f"send:run-{next(_ids)}:mail:1"
        traits = {"email": email_address or f"{customer}@example.com", "first_name": "Ken"}
        payload = {
            "send_id": send_id,
            "customer_id": customer,
            "channel": "email",
            "category": "marketing",
            "template": template,
            "data": {"coupon": "C10"},
            "customer": {"traits": traits},
            "journey_id": "j1",
            "run_id": "r1",
            "step_id": "mail",
            **extra,
        }
        return Envelope.new(
            "send.requested", self.workspace_id, customer, payload, event_id=send_id
        )

    async def publish(self, topic: str, *events: Envelope) -> None:
        await self.bus.publish_batch(
            topic, [OutgoingMessage(e.bus_key, e.to_bytes()) for e in events]
        )

    async def deliver(self, *requests: Envelope) -> None:
        """Publishes the send requests and waits until each one is settled in the ledger."""
        await self.publish(topics.SEND_REQUESTS, *requests)
        ids = [r.id for r in requests]
        await self.wait_until(lambda: self._settled(ids))

    async def _settled(self, ids: list[str]) -> bool:
        async with self.delivery.engine.connect() as conn:
            count = await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM nt_sends WHERE send_id = ANY(:ids)"
                    " AND status <> 'sending'"
                ),
                {"ids": ids},
            )
        return bool(count == len(set(ids)))

    async def status(self, send_id: str) -> tuple[str, str | None]:
        async with self.delivery.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.text("SELECT status, reason FROM nt_sends WHERE send_id = :s"),
                    {"s": send_id},
                )
            ).one()
        return row.status, row.reason

    async def wait_until(self, condition: Callable[[], Any], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not await condition():
                await asyncio.sleep(0.02)


def notifier_settings(
    database_url: str, topic_prefix: str, bus_url: str, **extra: Any
) -> NotifierSettings:
    return NotifierSettings(
        database_url=database_url,
        bus_url=bus_url,
        topic_prefix=topic_prefix,
        bus_partitions=4,
        log_level="WARNING",
        log_format="console",
        secret_key=SECRET,
        notifier_tracking_url="http://ingest.test",
        notifier_public_url="http://notifier.test",
        notifier_from="Tea Shop <news@tea.example.com>",
        notifier_webhook_allowed_networks="127.0.0.0/8",
        **extra,
    )


@pytest.fixture(params=["postgres", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus_url(request: pytest.FixtureRequest) -> str:
    if request.param == "kafka":
        return f"kafka://{request.getfixturevalue('kafka_bootstrap')}"
    return "postgres"


async def _app(settings: NotifierSettings, inbox: Inbox | None) -> AsyncIterator[NotifierApp]:
    engine = create_engine(settings.database_dsn(), pool_size=1)
    workspace_id, _, admin = await make_workspace(engine, "shop")
    await engine.dispose()
    bus = bus_from_settings(settings)
    await bus.start()
    clock = FakeClock(T0)
    app = create_app(settings)
    try:
        async with running(app) as client:
            app.state.delivery.clock = clock
            yield NotifierApp(
                client, app.state, workspace_id, admin.secret, bus, clock, settings, inbox
            )
    finally:
        await bus.close()


@pytest.fixture
async def notifier_app(
    database_url: str, topic_prefix: str, bus_url: str, smtp: tuple[Inbox, int]
) -> AsyncIterator[NotifierApp]:
    inbox, port = smtp
    settings = notifier_settings(
        database_url,
        topic_prefix,
        bus_url,
        notifier_smtp_url=f"smtp://127.0.0.1:{port}",
        notifier_retry_seconds=60,
    )
    async for app in _app(settings, inbox):
        yield app


@pytest.fixture
async def mailbox_app(database_url: str, topic_prefix: str) -> AsyncIterator[NotifierApp]:
    settings = notifier_settings(database_url, topic_prefix, "postgres")
    async for app in _app(settings, None):
        yield app


def advance(app: NotifierApp, **delta: float) -> None:
    app.clock.now += timedelta(**delta)

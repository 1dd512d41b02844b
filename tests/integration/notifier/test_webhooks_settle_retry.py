"""PostgreSQL away while a round of integration webhooks is being answered: the dispatcher keeps
trying to record what the receiver answered until the database is back, so no delivery that
got its 2xx is posted again."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import threading
from collections import Counter

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy.engine import make_url
from standardwebhooks.webhooks import Webhook

from kizuna.db import create_engine
from kizuna.embedded_pg import free_port
from kizuna.envelope import Envelope
from kizuna_notifier.adapters import integration_store as store
from kizuna_notifier.adapters.webhooks import WebhookPoster
from kizuna_notifier.domain import endpoints
from kizuna_notifier.integrations import Dispatcher
from tests.helpers import make_workspace
from tests.integration.live import served
from tests.integration.notifier.conftest import notifier_settings

MESSAGES = 20
AWAY_SECONDS = 2.0


class Proxy:
    """A TCP relay in front of PostgreSQL that can be cut (every connection dropped, new ones
    refused) and brought back on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await self.server.wait_closed()
        self.server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        try:
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        finally:
            self.writers -= {writer, upstream_writer}


def receiver(secret: str, release: threading.Event) -> tuple[FastAPI, list[str]]:
    """Verifies each delivery, then holds its 200 until ``release`` is set."""
    app = FastAPI()
    verified: list[str] = []
    lock = threading.Lock()

    @app.post("/hook")
    async def hook(request: Request) -> PlainTextResponse:
        headers = dict(request.headers)
        Webhook(secret).verify(await request.body(), headers)
        with lock:
            verified.append(headers["webhook-id"])
        while not release.is_set():
            await asyncio.sleep(0.01)
        return PlainTextResponse("ok")

    return app, verified


async def test_settling_waits_for_the_database_instead_of_posting_again(
    database_url: str, topic_prefix: str
) -> None:
    direct = create_engine(database_url, pool_size=2)
    workspace_id, _, _ = await make_workspace(direct, "shop")
    secret = endpoints.new_secret()
    release = threading.Event()
    app, verified = receiver(secret, release)
    url = make_url(database_url)
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    engine = create_engine(
        url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
        pool_size=2,
    )
    poster = WebhookPoster([ipaddress.ip_network("127.0.0.0/8")])
    dispatcher = Dispatcher(
        engine, poster, notifier_settings(database_url, topic_prefix, "postgres")
    )
    try:
        async with served(app) as base:
            async with direct.begin() as conn:
                endpoint = await store.create_endpoint(
                    conn,
                    {
                        "id": "ep_crm",
                        "ws": workspace_id,
                        "url": f"{base}/hook",
                        "description": "crm",
                        "event_types": ["order.completed"],
                        "enabled": True,
                        "secrets": [{"secret": secret, "expires_at": None}],
                    },
                )
            orders = [
                Envelope.new(
                    "track",
                    workspace_id,
                    f"c{i}",
                    {"type": "track", "event": "Order Completed", "properties": {"order_id": i}},
                    event_id=f"order-{i}",
                )
                for i in range(MESSAGES)
            ]
            assert await dispatcher.record(orders) == MESSAGES
            draining = asyncio.create_task(dispatcher.drain())
            pool = engine.sync_engine.pool
            async with asyncio.timeout(30):  # all posted, the next claim (none due) over
                while len(verified) < MESSAGES or pool.checkedout():  # type: ignore[attr-defined]
                    await asyncio.sleep(0.01)
            await proxy.cut()  # PostgreSQL away while the answers come back
            release.set()
            await asyncio.sleep(AWAY_SECONDS)
            assert not draining.done(), "the round gave up while the database was away"
            await proxy.start()
            async with asyncio.timeout(60):
                assert await draining == MESSAGES
            assert await dispatcher.drain() == 0  # nothing left due: all settled
        async with direct.connect() as conn:
            states = (
                await conn.execute(
                    sa.text(
                        "SELECT status, attempts, last_status, count(*)"
                        " FROM nt_webhook_deliveries WHERE endpoint_id = :e"
                        " GROUP BY status, attempts, last_status"
                    ),
                    {"e": endpoint.id},
                )
            ).all()
            logged = await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM nt_webhook_attempts WHERE endpoint_id = :e"
                    " AND status_code = 200"
                ),
                {"e": endpoint.id},
            )
    finally:
        release.set()
        await poster.close()
        await engine.dispose()
        await direct.dispose()
        if proxy.server is not None:
            await proxy.cut()

    assert [tuple(row) for row in states] == [("succeeded", 1, 200, MESSAGES)]
    assert logged == MESSAGES
    assert Counter(verified) == Counter(dict.fromkeys(set(verified), 1))
    assert len(verified) == MESSAGES

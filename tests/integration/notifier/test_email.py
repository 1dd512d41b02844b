"""Email through a real SMTP server (aiosmtpd) on loopback, on real PostgreSQL and both buses."""

from __future__ import annotations

from kizuna import topics
from kizuna.envelope import Envelope
from kizuna_ingest.main import create_app as ingest_app
from kizuna_ingest.settings import IngestSettings
from tests.helpers import read_topic
from tests.integration.apps import running
from tests.integration.notifier.conftest import NotifierApp, advance

PROMO = {
    "subject": "Hello {{ customer.first_name }}",
    "html": '<html><body><p>Use {{ data.coupon }}</p><a href="https://tea.example.com/sale">Sale</a>'
    "</body></html>",
    "topic": "promotions",
}


async def test_marketing_mail_has_parts_headers_and_tracked_links(
    notifier_app: NotifierApp,
) -> None:
    app = notifier_app
    assert app.inbox is not None
    await app.template("promo", **PROMO)
    request = app.request("c1", "promo")
    await app.deliver(request)
    [mail] = app.inbox.received()
    assert mail["Subject"] == "Hello Ken"
    assert mail["From"] == "Tea Shop <news@tea.example.com>"
    assert mail["To"] == "c1@example.com"
    assert mail["Message-ID"].endswith("@tea.example.com>")
    assert mail["List-Unsubscribe"].startswith("<http://notifier.test/u/")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None
    assert html is not None
    assert "Use C10" in text.get_content()
    content = html.get_content()
    assert "https://tea.example.com/sale" not in content
    link = content.split('href="http://ingest.test')[1].split('"')[0]

    ingest_settings = IngestSettings(
        **{**app.settings.model_dump(), "secret_key": app.settings.secret_key}
    )
    async with running(ingest_app(ingest_settings)) as ingest:
        response = await ingest.get(link)
    assert response.status_code in (302, 303, 307)
    assert response.headers["location"] == "https://tea.example.com/sale"
    [click] = await read_topic(app.bus, topics.RAW_EVENTS, 1, settle=0.3)
    event = Envelope.from_bytes(click.value)
    assert event.payload["event"] == "Email Link Clicked"
    assert event.payload["properties"]["message_id"] == request.id

    await app.delivery.publish_outbox()
    [outcome] = await read_topic(app.bus, topics.DELIVERY_OUTCOMES, 1, settle=0.3)
    delivered = Envelope.from_bytes(outcome.value)
    assert delivered.type == "delivery.delivered"
    assert delivered.payload["send_id"] == request.id


async def test_one_click_unsubscribe_stops_marketing(notifier_app: NotifierApp) -> None:
    app = notifier_app
    assert app.inbox is not None
    await app.template("promo", **PROMO)
    await app.deliver(app.request("c2", "promo"))
    [mail] = app.inbox.received()
    one_click = mail["List-Unsubscribe"].strip("<>").removeprefix("http://notifier.test")
    response = await app.client.post(
        one_click,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200  # no redirect, no cookie, no login
    second = app.request("c2", "promo")
    await app.deliver(second)
    assert await app.status(second.id) == ("skipped", "consent")
    assert len(app.inbox.received()) == 1
    await app.delivery.publish_outbox()
    messages = await read_topic(app.bus, topics.RAW_EVENTS, 1, settle=0.3)
    recorded = Envelope.from_bytes(messages[0].value)
    assert recorded.payload["event"] == "Unsubscribed"
    assert recorded.payload["customerId"] == "c2"


async def test_preference_page_leaves_one_topic(notifier_app: NotifierApp) -> None:
    app = notifier_app
    assert app.inbox is not None
    await app.template("promo", **PROMO)
    await app.template("news", subject="News", text="What is new", topic="news")
    await app.deliver(app.request("c3", "promo"))
    link = app.inbox.received()[0]["List-Unsubscribe"].strip("<>").removesuffix("/one-click")
    path = link.removeprefix("http://notifier.test")
    page = await app.client.get(path, headers={"accept-language": "ja"})
    assert page.status_code == 200
    assert "メール配信設定" in page.text
    assert 'value="promotions"' in page.text
    assert 'value="news"' in page.text
    saved = await app.client.post(path, data={"topic": "promotions"})
    assert saved.status_code == 200
    promo, news = app.request("c3", "promo"), app.request("c3", "news")
    await app.deliver(promo, news)
    assert await app.status(promo.id) == ("skipped", "unsubscribed from promotions")
    assert (await app.status(news.id))[0] == "sent"
    assert (await app.client.get("/u/not-a-token")).status_code == 404


async def test_hard_bounce_suppresses_and_4xx_is_retried(notifier_app: NotifierApp) -> None:
    app = notifier_app
    assert app.inbox is not None
    await app.template("promo", **PROMO)
    bounced = app.request("c4", "promo", email_address="bounce@example.com")
    await app.deliver(bounced)
    assert (await app.status(bounced.id))[0] == "bounced"
    later = app.request("c4", "promo", email_address="bounce@example.com")
    await app.deliver(later)
    assert await app.status(later.id) == ("skipped", "suppressed")

    app.inbox.temporary_failures["slow@example.com"] = 1
    slow = app.request("c5", "promo", email_address="slow@example.com")
    await app.deliver(slow)
    status, reason = await app.status(slow.id)
    assert status == "retrying"
    assert reason is not None
    assert reason.startswith("451")
    assert await app.delivery.retry_due() == 0  # not yet due
    advance(app, seconds=61)
    assert await app.delivery.retry_due() == 1
    assert (await app.status(slow.id))[0] == "sent"
    assert [m["To"] for m in app.inbox.received()] == ["slow@example.com"]


async def test_duplicates_consent_and_render_failures(notifier_app: NotifierApp) -> None:
    app = notifier_app
    assert app.inbox is not None
    await app.template("promo", **PROMO)
    await app.template("fragile", subject="x", text="{{ data.coupon.upper() }}")
    request = app.request("c6", "promo")
    await app.deliver(request)
    await app.deliver(request)  # redelivered or resent: nothing more goes out
    assert len(app.inbox.received()) == 1

    opted_out = Envelope.new(
        "track",
        app.workspace_id,
        "c7",
        {
            "type": "track",
            "event": "Consent Updated",
            "properties": {"channel": "email", "status": "revoked"},
        },
    )
    await app.publish(topics.RESOLVED_EVENTS, opted_out)
    after = app.request("c7", "promo")

    async def mirrored() -> bool:
        async with app.delivery.engine.connect() as conn:
            from sqlalchemy import text

            return bool(await conn.scalar(text("SELECT count(*) FROM nt_consent")))

    await app.wait_until(mirrored)
    broken = app.request("c8", "fragile", data={"coupon": 5})
    missing = app.request("c9", "nope")
    await app.deliver(after, broken, missing)
    assert await app.status(after.id) == ("skipped", "consent")
    status, reason = await app.status(broken.id)
    assert status == "failed"
    assert reason is not None
    assert reason.startswith("render: text")
    assert await app.status(missing.id) == ("failed", "no template 'nope'")
    assert len(app.inbox.received()) == 1


async def test_without_smtp_mail_lands_in_the_mailbox(mailbox_app: NotifierApp) -> None:
    app = mailbox_app
    await app.template("promo", **PROMO)
    request = app.request("c10", "promo")
    await app.deliver(request)
    listed = (await app.client.get("/v1/mailbox", headers=app.admin)).json()["mail"]
    assert [m["send_id"] for m in listed] == [request.id]
    eml = await app.client.get(listed[0]["eml"], headers=app.admin)
    assert eml.headers["content-type"].startswith("message/rfc822")
    assert b"Subject: Hello Ken" in eml.content
    assert (await app.client.get("/v1/mailbox")).status_code == 401


async def test_template_api_refuses_what_would_not_render(mailbox_app: NotifierApp) -> None:
    app = mailbox_app
    response = await app.client.put(
        "/v1/templates/bad",
        json={"channel": "email", "subject": "Hi", "text": "line one\n{{ coupon_code }}"},
        headers=app.admin,
    )
    assert response.status_code == 422
    [problem] = response.json()["error"]["fields"]
    assert problem["field"] == "text"
    assert problem["problem"].startswith("line 2: unknown variable")
    await app.template(
        "ok",
        subject="Hi {{ customer.first_name }}",
        text="x",
        locales={"ja": {"subject": "{{ customer.first_name }}様"}},
    )
    preview = await app.client.post(
        "/v1/templates/ok/preview",
        json={"customer": {"first_name": "花子"}, "locale": "ja-JP"},
        headers=app.admin,
    )
    assert preview.json()["subject"] == "花子様"
    listed = await app.client.get("/v1/templates", headers=app.admin)
    assert [t["id"] for t in listed.json()["templates"]] == ["ok"]
    assert (await app.client.get("/v1/templates/bad", headers=app.admin)).status_code == 404

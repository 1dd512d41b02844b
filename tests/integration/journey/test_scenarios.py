"""Every standard scenario end to end, on real PostgreSQL and both buses, injected clock."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.integration.journey.conftest import JourneyApp


async def test_birthday_at_nine_local_time(journey_app: JourneyApp) -> None:
    app = journey_app
    await app.from_template("birthday")
    # T0 is 12:00 on 2 March in Tokyo; the birthday is on 5 March: 00:00 UTC
    await app.identify("b1", email="b1@example.com", birthday="1990-03-05", timezone="Asia/Tokyo")
    await app.identify("b2", email="b2@example.com", birthday="1985-07-01")
    app.clock.now = datetime(2026, 3, 4, 23, 59, tzinfo=UTC)
    await app.tick()
    assert await app.sent("b1") == []
    await app.tick(minutes=6)  # spread over at most five minutes
    assert await app.sent("b1") == ["coupon"]
    assert await app.sent("b2") == []
    await app.tick(days=2)
    assert await app.sent("b1") == ["coupon"]
    [request] = await app.send_requests(at_least=1)
    assert request.payload["template"] == "birthday-coupon"
    assert request.customer_key == "b1"


async def test_dormant_customers_entering_at_risk_get_a_winback(journey_app: JourneyApp) -> None:
    app = journey_app
    await app.from_template("dormant-reactivation", holdout_percent=0)
    await app.identify("d1", email="d1@example.com")
    await app.identify("d2", email="d2@example.com")
    await app.send(app.segment_change("d1", "at_risk"), app.segment_change("d2", "loyal"))
    assert await app.sent("d1") == ["winback"]
    assert await app.sent("d2") == []
    [request] = await app.send_requests(at_least=1)
    assert request.payload["data"]["coupon"] == "COMEBACK15"


async def test_no_order_for_90_days_enrols_by_inactivity(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    await app.from_template("dormant-reactivation", via="inactivity", days=90, holdout_percent=0)
    await app.identify("i1", email="i1@example.com")
    await app.identify("i2", email="i2@example.com")
    await app.track("i1", "Order Completed", order_id="a", total=10)
    await app.track("i2", "Order Completed", order_id="b", total=10)
    await app.tick(days=60)
    await app.track("i2", "Order Completed", order_id="c", total=10)  # i2 keeps buying
    await app.tick(days=31)
    assert await app.sent("i1") == ["winback"]
    assert await app.sent("i2") == []
    await app.tick(days=60)
    assert await app.sent("i2") == ["winback"]


async def test_post_purchase_thanks_review_and_replenishment(journey_app: JourneyApp) -> None:
    app = journey_app
    await app.from_template("post-purchase", replenishment_days=30)
    await app.identify("p1", email="p1@example.com")
    await app.track("p1", "Order Completed", order_id="o1", total=50)
    assert await app.sent("p1") == ["thanks"]
    await app.tick(days=7, minutes=1)
    assert await app.sent("p1") == ["thanks", "review"]
    await app.tick(days=23, minutes=1)
    assert await app.sent("p1") == ["thanks", "review", "replenish"]
    requests = await app.send_requests(at_least=3)
    assert [r.payload["category"] for r in requests] == ["transactional", "marketing", "marketing"]


async def test_download_invites_to_the_seminar_unless_registered(journey_app: JourneyApp) -> None:
    app = journey_app
    await app.from_template("download-follow-up")
    for customer in ("f1", "f2"):
        await app.identify(customer, email=f"{customer}@example.com")
        await app.track(customer, "Asset Downloaded", asset_topic="CRM", asset_title="RFM guide")
    await app.tick(hours=12)
    await app.track("f2", "Seminar Registered", topic="CRM")
    await app.tick(hours=13)
    assert await app.sent("f1") == ["invite"]
    assert await app.sent("f2") == []
    [request] = await app.send_requests(at_least=1)
    assert request.payload["data"]["properties"]["asset_topic"] == "CRM"


async def test_welcome_series_of_three_mails_once_ever(journey_app: JourneyApp) -> None:
    app = journey_app
    await app.from_template("welcome")
    await app.identify("w1", email="w1@example.com")
    await app.track("w1", "Newsletter Subscribed")
    await app.tick(days=2, minutes=1)
    await app.tick(days=2, minutes=1)
    assert await app.sent("w1") == ["welcome_1", "welcome_2", "welcome_3"]
    await app.track("w1", "Newsletter Subscribed")  # once ever
    await app.tick(days=5)
    assert await app.sent("w1") == ["welcome_1", "welcome_2", "welcome_3"]
    assert len(await app.send_requests(at_least=3)) == 3


async def test_entering_champions_gets_early_access(journey_app: JourneyApp) -> None:
    app = journey_app
    await app.from_template("vip")
    await app.identify("v1", email="v1@example.com")
    await app.send(app.segment_change("v1", "loyal"))
    await app.send(app.segment_change("v1", "champions"))
    await app.send(app.segment_change("v1", "champions", entered=False))
    assert await app.sent("v1") == ["offer"]

"""Cart abandonment end to end on real PostgreSQL and both buses, with an injected clock."""

from __future__ import annotations

from tests.integration.journey.conftest import JourneyApp


async def test_no_order_gets_reminder_then_coupon_each_once(journey_app: JourneyApp) -> None:
    app = journey_app
    journey_id = await app.from_template("cart-abandonment", holdout_percent=0)
    await app.identify("c1", email="c1@example.com")
    await app.track("c1", "Checkout Started", products=[{"product_id": "tea", "price": 12}])

    assert await app.sent("c1") == []
    await app.tick(minutes=59)
    assert await app.sent("c1") == []
    await app.tick(minutes=2)
    assert await app.sent("c1") == ["reminder"]
    await app.tick(hours=23)
    assert await app.sent("c1") == ["reminder"]
    await app.tick(hours=2)
    assert await app.sent("c1") == ["reminder", "coupon"]
    assert await app.tick(days=3) == 0

    requests = await app.send_requests(at_least=2)
    assert [r.payload["template"] for r in requests] == ["cart-reminder", "cart-coupon"]
    assert len({r.id for r in requests}) == 2
    reminder = requests[0].payload
    assert reminder["journey_id"] == journey_id
    assert reminder["channel"] == "email"
    assert reminder["data"]["properties"]["products"][0]["product_id"] == "tea"
    assert requests[1].payload["data"]["coupon"] == "CART10"
    runs = await app.runs("c1")
    assert [(r["status"], r["end_reason"]) for r in runs] == [("completed", "completed")]


async def test_order_in_time_sends_nothing_and_counts_the_goal(journey_app: JourneyApp) -> None:
    app = journey_app
    await app.from_template("cart-abandonment", holdout_percent=0)
    await app.identify("c2", email="c2@example.com")
    await app.track("c2", "Checkout Started")
    await app.tick(minutes=30)
    await app.track("c2", "Order Completed", order_id="o1", total=30)
    await app.tick(days=3)

    assert await app.sent("c2") == []
    [run] = await app.runs("c2")
    assert run["status"] == "goal"
    assert run["converted_at"] is not None
    assert run["due_at"] is None


async def test_entry_once_per_day_and_one_live_run(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    await app.from_template("cart-abandonment", holdout_percent=0, second_wait="PT1H")
    await app.identify("c3", email="c3@example.com")
    await app.track("c3", "Checkout Started")
    await app.track("c3", "Checkout Started")  # already in a live run
    assert len(await app.runs("c3")) == 1
    await app.tick(minutes=61)
    await app.tick(minutes=61)  # the run completed, but it entered less than a day ago
    assert [r["status"] for r in await app.runs("c3")] == ["completed"]
    await app.track("c3", "Checkout Started")
    assert len(await app.runs("c3")) == 1
    await app.tick(hours=22)
    await app.track("c3", "Checkout Started")  # a day after the first entry
    assert len(await app.runs("c3")) == 2


async def test_redelivered_trigger_starts_nothing_twice(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    await app.from_template("cart-abandonment", holdout_percent=0)
    await app.identify("c4", email="c4@example.com")
    event = app.event("c4", "track", "Checkout Started")
    await app.send(event)
    await app.send(event)
    await app.tick(minutes=61)
    await app.tick(minutes=61)
    assert await app.sent("c4") == ["reminder"]
    assert len(await app.runs("c4")) == 1

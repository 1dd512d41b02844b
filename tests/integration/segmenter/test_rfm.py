"""RFM in real time on the real bus: purchases rescore at once, time moves tiers, every change is
announced once."""

from __future__ import annotations

from kizuna import topics
from kizuna_segmenter import handlers
from tests.integration.segmenter.conftest import SegmenterApp


def moves(changes: list, customer: str) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [
        (e.type, e.payload["segment_id"])
        for e in changes
        if e.customer_key == customer and e.type.startswith("segment.")
    ]


async def test_a_customer_moves_from_new_to_promising_to_champions(
    segmenter_app: SegmenterApp,
) -> None:
    app = segmenter_app
    await app.publish(topics.RESOLVED_EVENTS, app.order("c-1", "o-1", 3000))
    await app.wait_until(lambda: _is(app, "c-1", "new"))

    app.clock.advance(days=40)  # bought nothing: recency 40 days
    await app.segmenter.sweep()
    assert await app.tier_of("c-1") == "promising"

    await app.publish(
        topics.RESOLVED_EVENTS,
        app.order("c-1", "o-2", 1000),
        app.order("c-1", "o-3", 1000),
        app.order("c-1", "o-3", 1000),  # the same order reported twice counts once
        app.order("c-1", "o-4", 1000),
    )
    await app.wait_until(lambda: _is(app, "c-1", "champions"))
    changes = await app.changes(5, settle=1.0)
    assert moves(changes, "c-1") == [
        ("segment.entered", "new"),
        ("segment.exited", "new"),
        ("segment.entered", "promising"),
        ("segment.exited", "promising"),
        ("segment.entered", "champions"),
    ]
    assert len({e.id for e in changes}) == len(changes), "each change announced once"
    entered = changes[-1].payload
    assert entered["previous"] == "promising"
    assert entered["scores"] == {"recency": 5, "frequency": 4, "monetary": 3}

    shown = await app.client.get("/v1/rfm/customers/c-1", headers=app.admin)
    assert shown.status_code == 200
    assert shown.json()["tier"] == "champions"
    assert shown.json()["facts"]["frequency"] == 4
    assert shown.json()["facts"]["monetary"] == 6000


async def _is(app: SegmenterApp, customer: str, tier: str) -> bool:
    return await app.tier_of(customer) == tier


async def test_time_alone_moves_a_customer_to_at_risk_and_the_sweep_touches_only_them(
    segmenter_app: SegmenterApp,
) -> None:
    app = segmenter_app
    await app.publish(
        topics.RESOLVED_EVENTS,
        *(app.order("c-2", f"o2-{i}", 500) for i in range(3)),
    )
    await app.wait_until(lambda: _is(app, "c-2", "potential_loyalist"))
    app.clock.advance(days=20)
    await app.publish(topics.RESOLVED_EVENTS, app.order("c-3", "o3-1", 100))
    await app.wait_until(lambda: _is(app, "c-3", "new"))

    app.clock.advance(days=181)  # c-2: 201 days since the last order; c-3: 181
    async with app.segmenter.engine.begin() as conn:
        reviewed, changed = await handlers.sweep_due(conn, app.clock(), 1000)
    assert (reviewed, changed) == (2, 2), "both crossed a recency boundary"
    assert await app.tier_of("c-2") == "at_risk"
    assert await app.tier_of("c-3") == "hibernating"
    async with app.segmenter.engine.begin() as conn:
        assert await handlers.sweep_due(conn, app.clock(), 1000) == (0, 0), "nothing else due"


async def test_refunds_reduce_monetary_and_merges_move_orders(segmenter_app: SegmenterApp) -> None:
    app = segmenter_app
    await app.publish(
        topics.RESOLVED_EVENTS,
        app.order("c-4", "o4-1", 1000),
        app.order("c-5", "o5-1", 2000),
        app.order("c-5", "o5-2", 2000),
    )
    await app.wait_until(lambda: _is(app, "c-5", "potential_loyalist"))
    refund = app.order("c-5", "o5-2", 500, refund=True)
    await app.publish(topics.RESOLVED_EVENTS, refund, refund)
    merge = app.order("x", "x", 0).model_copy(
        update={
            "id": "merged:c-4",
            "type": "customer.merged",
            "customer_key": "c-5",
            "payload": {"absorbed_id": "c-4", "survivor_id": "c-5"},
        }
    )
    await app.publish(topics.CUSTOMER_LIFECYCLE, merge)

    async def merged() -> bool:
        shown = await app.client.get("/v1/rfm/customers/c-5", headers=app.admin)
        return bool(shown.json()["facts"]["frequency"] == 3)

    await app.wait_until(merged)
    await app.wait_until(_monetary(app, "c-5", 4500))
    gone = await app.client.get("/v1/rfm/customers/c-4", headers=app.admin)
    assert gone.status_code == 404
    assert await app.tier_of("c-5") == "potential_loyalist"


def _monetary(app: SegmenterApp, customer: str, expected: float):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        shown = await app.client.get(f"/v1/rfm/customers/{customer}", headers=app.admin)
        return bool(shown.json()["facts"]["monetary"] == expected)

    return check

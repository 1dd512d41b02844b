"""The full pass lets the database find the buyers whose scores move: it must find exactly
those that Python's scoring would move, ties on the cut points included."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
import sqlalchemy as sa

from kizuna.db import create_engine
from kizuna_segmenter.adapters import store
from kizuna_segmenter.domain import rfm
from kizuna_segmenter.settings import SegmenterSettings
from tests.integration.segmenter.conftest import T0

pytestmark = pytest.mark.parametrize("segmenter_settings", ["postgres"], indirect=True)
CUTS = (10.0, 30.0, 60.0, 120.0)


@pytest.mark.parametrize(
    "bounds",
    [
        rfm.Bounds(CUTS, (1.0, 1.0, 2.0, 4.0), (1000.0, 2500.5, 4000.0, 9000.0), buyers=500),
        rfm.Bounds(buyers=3),  # fixed thresholds
    ],
)
async def test_the_database_finds_exactly_the_buyers_python_would_move(
    segmenter_settings: SegmenterSettings, bounds: rfm.Bounds
) -> None:
    rng = random.Random(5)
    engine = create_engine(segmenter_settings.database_dsn(), pool_size=1)
    rows = []
    for i in range(500):
        days = rng.choice([*CUTS, 30.0, 90.0, 180.0, 365.0, rng.uniform(0, 400)])
        frequency = rng.choice([1, 2, 3, 4, 5, 6])
        monetary = rng.choice([1000, 2500.5, 4000, 9000, round(rng.uniform(0, 12000), 2)])
        stored = (rng.randint(1, 5), rng.randint(1, 5), rng.randint(1, 5))
        rows.append((f"c{i:03d}", T0 - timedelta(days=days), frequency, monetary, stored))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO seg_customers (workspace_id, customer_id, first_order_at,"
                    " last_order_at, frequency, monetary, recency_score, frequency_score,"
                    " monetary_score) SELECT 'ws', c, t, t, f, m, r, fs, ms FROM unnest("
                    " CAST(:c AS text[]), CAST(:t AS timestamptz[]), CAST(:f AS integer[]),"
                    " CAST(:m AS numeric[]), CAST(:r AS smallint[]), CAST(:fs AS smallint[]),"
                    " CAST(:ms AS smallint[])) x(c, t, f, m, r, fs, ms)"
                ),
                {
                    "c": [r[0] for r in rows],
                    "t": [r[1] for r in rows],
                    "f": [r[2] for r in rows],
                    "m": [r[3] for r in rows],
                    "r": [r[4][0] for r in rows],
                    "fs": [r[4][1] for r in rows],
                    "ms": [r[4][2] for r in rows],
                },
            )
            found: dict[str, store.CustomerState] = {}
            after = ""
            while True:
                last, moved = await store.moved_buyers_after(conn, "ws", after, 64, bounds, T0)
                found.update(moved)
                if last is None:
                    break
                after = last
    finally:
        await engine.dispose()
    expected = set()
    for customer_id, last_order_at, frequency, monetary, stored in rows:
        scores = rfm.score(rfm.Facts(last_order_at, frequency, monetary), bounds, T0)
        assert scores is not None
        if (scores.recency, scores.frequency, scores.monetary) != stored:
            expected.add(customer_id)
    assert set(found) == expected
    assert 0 < len(expected) < len(rows)

"""`kizuna report rfm` and `kizuna report deciles` against a running segmenter."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from kizuna import topics
from kizuna.cli import app as cli
from kizuna.envelope import utcnow
from kizuna_segmenter.main import create_app
from kizuna_segmenter.settings import SegmenterSettings
from tests.integration.live import served
from tests.integration.segmenter.conftest import SegmenterApp

pytestmark = pytest.mark.parametrize("segmenter_settings", ["postgres"], indirect=True)


async def test_reports_draw_what_the_api_says(
    segmenter_app: SegmenterApp, segmenter_settings: SegmenterSettings
) -> None:
    app = segmenter_app
    app.clock.now = utcnow()  # the second, live app below keeps real time and sweeps at start
    await app.publish(topics.RESOLVED_EVENTS, app.order("r1", "ro", 500))

    async def scored() -> bool:
        return await app.tier_of("r1") == "new"

    await app.wait_until(scored)
    runner = CliRunner()
    async with served(create_app(segmenter_settings)) as url:
        grid = await asyncio.to_thread(
            runner.invoke, cli, ["report", "rfm", "--url", url, "--admin-key", app.admin_key,
                                 "--no-colour"],
        )  # fmt: skip
        deciles = await asyncio.to_thread(
            runner.invoke, cli, ["report", "deciles", "--url", url, "--admin-key", app.admin_key]
        )
        refused = await asyncio.to_thread(
            runner.invoke, cli, ["report", "rfm", "--url", url, "--admin-key", "kz_admin_nope"]
        )
    assert grid.exit_code == 0, grid.output
    r5 = next(line for line in grid.output.splitlines() if line.strip().startswith("R5"))
    assert r5.split()[1] == "1", "one customer in R5 F1"
    assert "New" in grid.output
    assert deciles.exit_code == 0, deciles.output
    assert "100.0%" in deciles.output
    assert refused.exit_code == 1
    assert "401" in refused.output

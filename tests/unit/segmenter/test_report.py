"""The terminal pictures of `kizuna report`."""

from __future__ import annotations

from kizuna_segmenter.report import decile_table, rfm_grid

GRID = {
    "cells": [
        {"recency": r, "frequency": f, "tier": "champions" if (r, f) == (5, 5) else "lost",
         "customers": 7 if (r, f) == (5, 5) else 1, "revenue": 0.0}
        for r in range(5, 0, -1)
        for f in range(1, 6)
    ],
    "tiers": [{"id": "champions", "name": "優良顧客", "customers": 7, "revenue": 12345.0}],
}  # fmt: skip


def test_the_grid_shows_counts_and_tiers_with_the_busiest_cell_darkest() -> None:
    plain = rfm_grid(GRID, colour=False)
    assert "\x1b[" not in plain
    rows = plain.splitlines()
    r5 = next(line for line in rows if line.strip().startswith("R5"))
    assert r5.split()[-1] == "7"
    assert "優良顧客" in plain
    assert "12,345 revenue" in plain
    coloured = rfm_grid(GRID)
    assert "\x1b[48;5;88m" in coloured, "the fullest cell gets the darkest shade"


def test_the_decile_table_has_shares_and_bars() -> None:
    table = decile_table(
        {"deciles": [
            {"decile": 1, "customers": 2, "revenue": 900.0, "share": 0.9, "cumulative_share": 0.9},
            {"decile": 2, "customers": 2, "revenue": 100.0, "share": 0.1, "cumulative_share": 1.0},
        ]},
        colour=False,
    )  # fmt: skip
    lines = table.splitlines()
    assert "90.0%" in lines[1]
    assert lines[1].count("█") == 36
    assert "100.0%" in lines[2]
    assert decile_table({"deciles": []}).endswith("(no buyers yet)")

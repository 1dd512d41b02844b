"""Terminal pictures of the RFM grid and the decile table, for `kizuna report`. Pure: takes
the API's JSON, returns text (ANSI colours unless ``colour`` is False)."""

from __future__ import annotations

from typing import Any

# A light-to-dark ramp of 256-colour backgrounds.
RAMP = (255, 230, 223, 216, 209, 202, 196, 160, 124, 88)
RESET = "\x1b[0m"


def _shade(value: float, highest: float, colour: bool) -> tuple[str, str]:
    if not colour or highest <= 0:
        return "", ""
    step = min(int(value / highest * (len(RAMP) - 1) + 0.5), len(RAMP) - 1)
    foreground = 255 if step >= 6 else 16
    return f"\x1b[48;5;{RAMP[step]}m\x1b[38;5;{foreground}m", RESET


def rfm_grid(grid: dict[str, Any], *, colour: bool = True) -> str:
    cells = {(c["recency"], c["frequency"]): c for c in grid["cells"]}
    highest = max((c["customers"] for c in grid["cells"]), default=0)
    width = 12
    lines = ["customers per recency (R) x frequency (F) cell; the tier is below each count", ""]
    lines.append("      " + "".join(f"F{f}".center(width) for f in range(1, 6)))
    for r in range(5, 0, -1):
        counts, tiers = f"  R{r}  ", "      "
        for f in range(1, 6):
            cell = cells.get((r, f), {"customers": 0, "tier": None})
            start, end = _shade(cell["customers"], highest, colour)
            counts += start + str(cell["customers"]).center(width) + end
            tiers += start + str(cell["tier"] or "")[: width - 1].center(width) + end
        lines += [counts, tiers]
    lines.append("")
    for tier in grid["tiers"]:
        lines.append(
            f"  {tier['name'][:24]:<24} {tier['customers']:>9} customers"
            f" {tier['revenue']:>14,.0f} revenue"
        )
    return "\n".join(lines)


def decile_table(deciles: dict[str, Any], *, colour: bool = True) -> str:
    rows = deciles["deciles"]
    lines = [f"  {'decile':>6} {'customers':>9} {'revenue':>14} {'share':>7} {'cumulative':>10}"]
    for row in rows:
        bar = "█" * round(row["share"] * 40)
        start, end = _shade(row["share"], max((r["share"] for r in rows), default=0), colour)
        lines.append(
            f"  {row['decile']:>6} {row['customers']:>9} {row['revenue']:>14,.0f}"
            f" {row['share']:>7.1%} {row['cumulative_share']:>10.1%} {start}{bar}{end}"
        )
    if not rows:
        lines.append("  (no buyers yet)")
    return "\n".join(lines)

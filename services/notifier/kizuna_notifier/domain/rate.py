"""Rate limits per workspace and channel as a generic cell-rate algorithm (GCRA): one stored
time per bucket, the "theoretical arrival time" of the next send. Pure.

A bucket allows ``per_second`` sends on average and a burst of ``burst`` at once. A batch asks
for ``wanted`` sends: each gets the delay after which it may go, as long as that delay stays
within ``max_wait``; the rest are deferred to ``resume_at``. Waiting inside the batch slows the
consumer down (backpressure); deferring keeps a long queue in the sends ledger instead of in
memory, so nothing is refused and nothing is lost."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Admission:
    delays: list[float]  # seconds to wait before each admitted send, in order
    tat: float  # the bucket's new theoretical arrival time
    resume_at: float | None  # when the first deferred send may go; None if none was deferred


def admit(
    tat: float, now: float, per_second: float, burst: int, wanted: int, max_wait: float
) -> Admission:
    interval = 1.0 / per_second
    tolerance = (max(burst, 1) - 1) * interval
    backlog = max(tat - now, 0.0)  # offsets from now: epoch seconds lose the small fractions
    delays: list[float] = []
    while len(delays) < wanted:
        delay = max(0.0, backlog + len(delays) * interval - tolerance)
        if delay > max_wait + 1e-9:
            break
        delays.append(delay)
    new_tat = now + backlog + len(delays) * interval
    if len(delays) < wanted:
        return Admission(delays, new_tat, now + max(0.0, new_tat - now - tolerance))
    return Admission(delays, new_tat, None)

from prometheus_client import Counter

from kizuna_profile.handlers import Outcome

EVENTS = Counter(
    "kizuna_profile_events_total",
    "Raw events the profile consumer saw, by what became of them.",
    ["result"],
)
MERGES = Counter("kizuna_profile_merges_total", "Customers merged into another.")


def record(outcome: Outcome) -> None:
    EVENTS.labels("duplicate").inc(outcome.duplicates)
    EVENTS.labels("dropped").inc(outcome.dropped)
    EVENTS.labels("stored").inc(outcome.stored)
    MERGES.inc(sum(1 for e in outcome.lifecycle if e.type == "customer.merged"))

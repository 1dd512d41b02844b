from prometheus_client import Counter

ACCEPTED = Counter("kizuna_ingest_events_accepted_total", "Events stored on the bus.", ["type"])
REJECTED = Counter(
    "kizuna_ingest_events_rejected_total", "Calls or batch items refused.", ["reason"]
)
RATE_LIMITED = Counter("kizuna_ingest_events_rate_limited_total", "Events refused with 429.")
TRACKED = Counter(
    "kizuna_ingest_tracking_hits_total",
    "Opens, clicks and downloads recorded.",
    ["kind", "machine"],
)
TRACKING_NOT_STORED = Counter(
    "kizuna_ingest_tracking_hits_not_stored_total",
    "Clicks and downloads redirected although the bus could not store the event.",
    ["kind"],
)

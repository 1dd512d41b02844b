"""Prometheus metrics every service exposes at /metrics."""

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "kizuna_http_requests_total", "HTTP requests served.", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "kizuna_http_request_seconds",
    "HTTP request latency.",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
MESSAGES_PROCESSED = Counter(
    "kizuna_consumer_messages_processed_total", "Messages handled and committed.", ["group"]
)
MESSAGES_FAILED = Counter(
    "kizuna_consumer_messages_failed_total", "Message handling attempts that failed.", ["group"]
)
MESSAGES_DEAD_LETTERED = Counter(
    "kizuna_consumer_messages_dead_lettered_total", "Messages sent to dead-letter.", ["group"]
)
CONSUMER_LAG = Gauge(
    "kizuna_consumer_lag", "Messages in assigned partitions not yet committed.", ["group"]
)
CONSUMER_BATCH_SECONDS = Histogram(
    "kizuna_consumer_batch_seconds", "Time to handle one batch.", ["group"]
)
MESSAGES_PUBLISHED = Counter(
    "kizuna_bus_messages_published_total", "Messages made durable on the bus.", ["topic"]
)

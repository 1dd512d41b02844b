"""Every topic that crosses the bus, by logical name (the bus adds the configured prefix)."""

from typing import Final

RAW_EVENTS: Final = "raw-events"
RESOLVED_EVENTS: Final = "resolved-events"
CUSTOMER_LIFECYCLE: Final = "customer-lifecycle"
SEGMENT_CHANGES: Final = "segment-changes"
SEND_REQUESTS: Final = "send-requests"
JOURNEY_EVENTS: Final = "journey-events"
DELIVERY_OUTCOMES: Final = "delivery-outcomes"
DEAD_LETTER: Final = "dead-letter"

ALL_TOPICS: Final = (
    RAW_EVENTS,
    RESOLVED_EVENTS,
    CUSTOMER_LIFECYCLE,
    SEGMENT_CHANGES,
    SEND_REQUESTS,
    JOURNEY_EVENTS,
    DELIVERY_OUTCOMES,
    DEAD_LETTER,
)

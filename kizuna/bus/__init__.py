from kizuna.bus.base import Bus, BusMessage, BusUnavailable, Consumer, OutgoingMessage
from kizuna.bus.runner import ConsumerRunner, Decoded, PoisonMessage

__all__ = [
    "Bus",
    "BusMessage",
    "BusUnavailable",
    "Consumer",
    "ConsumerRunner",
    "Decoded",
    "OutgoingMessage",
    "PoisonMessage",
]

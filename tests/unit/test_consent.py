from __future__ import annotations

from kizuna import consent
from kizuna.envelope import Envelope


def test_identify_traits_state_consent_per_channel() -> None:
    event = Envelope.new(
        "identify",
        "ws",
        "c1",
        {"type": "identify", "traits": {"consent": {"email": True, "LINE": False, "fax": True}}},
    )
    stated = {(s.channel, s.status, s.source) for s in consent.statements(event)}
    assert stated == {("email", "granted", "traits"), ("line", "revoked", "traits")}
    plain = Envelope.new("identify", "ws", "c1", {"type": "identify", "traits": {"a": 1}})
    assert consent.statements(plain) == []

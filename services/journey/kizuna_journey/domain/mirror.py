"""What the journey service keeps of a customer, moved forward by events in any order: traits
keep the value with the newest (event time, id); consent per channel the newest statement (an
opt-out wins a tie); hard bounces and complaints suppress a channel for good. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kizuna import consent
from kizuna.envelope import Envelope


@dataclass
class Mirror:
    traits: dict[str, Any] = field(default_factory=dict)
    trait_stamps: dict[str, str] = field(default_factory=dict)
    consent: dict[str, dict[str, str]] = field(default_factory=dict)  # channel → status, stamp
    suppressed: set[str] = field(default_factory=set)
    rfm: dict[str, int] = field(default_factory=dict)
    dirty: bool = False  # changed since it was loaded

    def consent_status(self) -> dict[str, str]:
        return {channel: entry["status"] for channel, entry in self.consent.items()}

    def set_traits(self, updates: dict[str, Any], stamp: str) -> set[str]:
        """Applies the traits an event states; returns the names whose value changed."""
        changed = set()
        for name, value in updates.items():
            if stamp > self.trait_stamps.get(name, ""):
                self.dirty = True
                self.trait_stamps[name] = stamp
                if self.traits.get(name) != value:
                    changed.add(name)
                if value is None:
                    self.traits.pop(name, None)
                else:
                    self.traits[name] = value
        return changed

    def state_consent(self, channel: str, status: str, stamp: str) -> None:
        current = self.consent.get(channel)
        candidate = (stamp.split("|")[0], status == "revoked", stamp)
        if current is None or candidate > (
            current["stamp"].split("|")[0],
            current["status"] == "revoked",
            current["stamp"],
        ):
            self.dirty = True
            self.consent[channel] = {"status": status, "stamp": stamp}

    def absorb(self, other: Mirror) -> None:
        """Merges another customer's mirror into this one (the order does not matter)."""
        for name, stamp in other.trait_stamps.items():
            if name in other.traits or stamp > self.trait_stamps.get(name, ""):
                self.set_traits({name: other.traits.get(name)}, stamp)
        for channel, entry in other.consent.items():
            self.state_consent(channel, entry["status"], entry["stamp"])
        self.dirty |= not other.suppressed <= self.suppressed
        self.suppressed |= other.suppressed
        if not self.rfm and other.rfm:
            self.rfm = dict(other.rfm)
            self.dirty = True


def observe(mirror: Mirror, event: Envelope) -> set[str]:
    """Moves the mirror by one new event; returns the names of traits that changed."""
    payload = event.payload
    if event.type == "identify" and isinstance(payload.get("traits"), dict):
        return mirror.set_traits(payload["traits"], consent.stamp_of(event))
    for statement in consent.statements(event):
        if statement.status == "suppressed":
            mirror.dirty |= statement.channel not in mirror.suppressed
            mirror.suppressed.add(statement.channel)
        else:
            mirror.state_consent(statement.channel, statement.status, statement.stamp)
    return set()

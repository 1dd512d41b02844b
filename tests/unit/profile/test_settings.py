"""The profile service's own defaults, and the shared variables still winning over them."""

from __future__ import annotations

import pytest

from kizuna.settings import KizunaSettings
from kizuna_profile.settings import ProfileSettings


def test_profile_consumers_take_bigger_batches_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KIZUNA_CONSUMER_BATCH_SIZE", raising=False)
    assert ProfileSettings().consumer_batch_size > KizunaSettings().consumer_batch_size
    monkeypatch.setenv("KIZUNA_CONSUMER_BATCH_SIZE", "700")
    assert ProfileSettings().consumer_batch_size == 700

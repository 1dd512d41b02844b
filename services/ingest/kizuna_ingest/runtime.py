from __future__ import annotations

import time
from dataclasses import dataclass, field

from kizuna.bus import Bus
from kizuna_ingest.adapters.sources import SourceDirectory
from kizuna_ingest.domain.ratelimit import RateLimiter
from kizuna_ingest.settings import IngestSettings


@dataclass
class IngestRuntime:
    settings: IngestSettings
    bus: Bus
    sources: SourceDirectory
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(time.monotonic))

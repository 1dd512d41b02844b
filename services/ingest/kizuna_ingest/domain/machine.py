"""Flags opens and clicks that were probably made by a machine (mail privacy proxies, link
scanners) rather than a person. They are kept and marked, never dropped: marketers decide."""

from __future__ import annotations

SCANNER_AGENTS = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "urldefense",
    "safelinks",
    "trendmicro",
    "forcepoint",
    "symantec",
    "messagelabs",
    "fireeye",
    "sophos",
    "cisco",
    "ironport",
    "bot",
    "crawler",
    "spider",
    "python-requests",
    "python-httpx",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "headlesschrome",
    "okhttp",
    "libwww",
)
PREFETCH_AGENTS = ("googleimageproxy", "yahoomailproxy", "ymailproxy")
MIN_HUMAN_SECONDS = 1.0


def suspect_machine(
    user_agent: str, delivered_at: float | None, now: float, kind: str
) -> str | None:
    """The reason an open or click looks automated, or None."""
    agent = user_agent.lower()
    if not agent:
        return "no user agent"
    if delivered_at is not None and now - delivered_at < MIN_HUMAN_SECONDS:
        return f"{kind} within {MIN_HUMAN_SECONDS:.0f}s of delivery"
    for marker in SCANNER_AGENTS:
        if marker in agent:
            return f"scanner user agent ({marker})"
    if kind == "open":
        for marker in PREFETCH_AGENTS:
            if marker in agent:
                return f"image prefetch proxy ({marker})"
        if agent == "mozilla/5.0":  # Apple Mail Privacy Protection's bare agent
            return "mail privacy proxy"
    return None

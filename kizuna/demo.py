"""`kizuna demo`, on top of a running `make dev`: a shop of a few thousand customers with two
years of history, the standard journeys with minute-scale waits, live traffic, and a status
line of what happens — events in, tiers, messages, opens, clicks, conversions. Some of the
mail that lands in the dev mailbox is "read" (open pixel) and "clicked" (tracked link), as
customers would, so results have something to show."""

from __future__ import annotations

import email
import email.policy
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import httpx

from kizuna.services import SERVICES
from kizuna.shop import live, model, runner
from kizuna.shop.check import profile_totals
from kizuna.shop.sender import Aborted, Sender

JOURNEYS: dict[str, dict[str, Any]] = {
    "cart-abandonment": {"first_wait": "PT1M", "second_wait": "PT3M", "holdout_percent": 10},
    "birthday": {},  # "at" is set to a couple of minutes from now, Tokyo time
    "dormant-reactivation": {"via": "inactivity", "days": 90, "holdout_percent": 10},
    "post-purchase": {"review_days": 1, "replenishment_days": 30},
    "download-follow-up": {"delay": "PT2M"},
}
SHOP = "https://sakura-tea.example"
TEMPLATES: dict[str, tuple[str, str]] = {  # id → (subject, html body); a text part is derived
    "cart-reminder": (
        "{{ customer.first_name or 'Hello' }}, your cart is waiting",
        "<p>Still thinking it over?</p><ul>{% for p in data.properties.products or [] %}"
        "<li>{{ p.name }}</li>{% endfor %}</ul>",
    ),
    "cart-coupon": ("{{ data.coupon }}: a little something for your cart", "<p>Use"
                    " <b>{{ data.coupon }}</b> at checkout.</p>"),
    "birthday-coupon": ("Happy birthday, {{ customer.first_name }}!", "<p>Celebrate with"
                        " <b>{{ data.coupon }}</b>.</p>"),
    "winback-coupon": ("We miss you, {{ customer.first_name }}", "<p>New teas since your last"
                       " visit, and <b>{{ data.coupon }}</b> for you.</p>"),
    "order-thanks": ("Thank you for your order", "<p>We are preparing it with care.</p>"),
    "review-request": ("How was your tea?", "<p>Tell us what you think.</p>"),
    "replenishment-reminder": ("Running low?", "<p>Reorder in one click.</p>"),
    "seminar-invitation": ("A seminar on {{ data.properties.asset_topic }}", "<p>Since you"
                           " read {{ data.properties.asset_title }}, join us live.</p>"),
}  # fmt: skip
TRACKED_LINK = re.compile(r'href="(http[^"]+/t/c/[^"]+)"')
OPEN_PIXEL = re.compile(r'src="(http[^"]+/t/o/[^"]+)"')


class _Stopped(Exception):
    pass


@dataclass(frozen=True)
class DemoOptions:
    customers: int = 2000
    history_days: float = 365
    rate: float = 20.0
    duration: float | None = None
    open_share: float = 0.45
    click_share: float = 0.15
    seed: int = 42
    port_base: int | None = None
    status_every: float = 5.0


@dataclass
class Platform:
    urls: dict[str, str]
    write_key: str
    admin_key: str
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30.0))

    def api(self, service: str, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_key}", **kw.pop("headers", {})}
        return self.client.request(method, f"{self.urls[service]}{path}", headers=headers, **kw)


def urls_for(port_base: int | None) -> dict[str, str]:
    return {
        name: f"http://127.0.0.1:{port_base + i + 1 if port_base else spec.port}"
        for i, (name, spec) in enumerate(SERVICES.items())
    }


def not_running(urls: dict[str, str]) -> list[str]:
    down = []
    for name, url in urls.items():
        try:
            ready = httpx.get(f"{url}/readyz", timeout=3).status_code == 200
        except httpx.HTTPError:
            ready = False
        if not ready:
            down.append(name)
    return down


def set_up_templates(platform: Platform) -> None:
    """HTML mail for the journeys (a link to the shop, so opens and clicks are tracked),
    unless the workspace has its own templates of those names."""
    for template_id, (subject, html) in TEMPLATES.items():
        if platform.api("notifier", "GET", f"/v1/templates/{template_id}").status_code == 200:
            continue
        body = f'{html}<p><a href="{SHOP}/shop">Visit the shop</a></p>'
        response = platform.api(
            "notifier",
            "PUT",
            f"/v1/templates/{template_id}",
            json={"channel": "email", "subject": subject, "html": body,
                  "text": f"{SHOP}/shop", "topic": "promotions"},
        )  # fmt: skip
        if response.status_code != 200:
            raise RuntimeError(f"{template_id}: {response.status_code} {response.text[:300]}")


def set_up_journeys(platform: Platform, now: datetime) -> list[str]:
    """The standard journeys as drafts (kept if an earlier demo made them); their ids."""
    set_up_templates(platform)
    made = []
    for scenario, options in JOURNEYS.items():
        if scenario == "birthday":
            at = (now.astimezone(ZoneInfo("Asia/Tokyo")) + timedelta(minutes=2)).strftime("%H:%M")
            options = {"at": at}
        journey_id = f"demo-{scenario}"
        response = platform.api(
            "journey",
            "POST",
            f"/v1/journeys/from-template/{scenario}",
            json={"id": journey_id, "options": options},
        )
        if response.status_code not in (201, 409):
            raise RuntimeError(f"{scenario}: {response.status_code} {response.text[:300]}")
        made.append(journey_id)
    return made


def activate(platform: Platform, journey_ids: list[str]) -> None:
    for journey_id in journey_ids:
        platform.api("journey", "POST", f"/v1/journeys/{journey_id}/activate")


@dataclass
class Engagement:
    """Opens and clicks some of the mail in the dev mailbox, once per mail."""

    platform: Platform
    rng: random.Random
    open_share: float
    click_share: float
    seen: set[int] = field(default_factory=set)
    opened: int = 0
    clicked: int = 0

    def read_new_mail(self) -> int:
        listed = self.platform.api("notifier", "GET", "/v1/mailbox", params={"limit": 500})
        if listed.status_code != 200:
            return 0
        fresh = [m for m in listed.json()["mail"] if m["id"] not in self.seen]
        for mail in fresh:
            self.seen.add(mail["id"])
            opens = self.rng.random() < self.open_share
            clicks = opens and self.rng.random() < self.click_share / max(self.open_share, 1e-9)
            if not opens:
                continue
            raw = self.platform.api("notifier", "GET", f"/v1/mailbox/{mail['id']}.eml")
            parsed = email.message_from_bytes(raw.content, policy=email.policy.default)
            html = parsed.get_body(("html",)) if isinstance(parsed, EmailMessage) else None
            text = html.get_content() if isinstance(html, EmailMessage) else ""
            for pattern, wanted in ((OPEN_PIXEL, True), (TRACKED_LINK, clicks)):
                found = pattern.search(text)
                if wanted and found:
                    self.platform.client.get(found.group(1).replace("&amp;", "&"))
                    if pattern is OPEN_PIXEL:
                        self.opened += 1
                    else:
                        self.clicked += 1
        return len(fresh)


def status(
    platform: Platform, journey_ids: list[str], sender: Sender, engagement: Engagement
) -> str:
    grid = platform.api("segmenter", "GET", "/v1/rfm/grid")
    tiers = ""
    if grid.status_code == 200:
        top = sorted(grid.json()["tiers"], key=lambda t: -t["customers"])[:4]
        tiers = " ".join(f"{t['id']}:{t['customers']}" for t in top if t["customers"])
    sent = converted = 0
    for journey_id in journey_ids:
        report = platform.api("journey", "GET", f"/v1/journeys/{journey_id}/results")
        if report.status_code == 200:
            body = report.json()
            sent += sum(step["sent"] for step in body["steps"])
            converted += body["runs"]["converted"]
    return (
        f"events {sender.stats.accepted:,} · tiers {tiers or '…'} · mails {sent:,}"
        f" (opened {engagement.opened:,}, clicked {engagement.clicked:,})"
        f" · conversions {converted:,}"
    )


def summary(platform: Platform, journey_ids: list[str]) -> list[str]:
    lines = ["", "Journey results (GET /v1/journeys/{id}/results on :8004):"]
    for journey_id in journey_ids:
        report = platform.api("journey", "GET", f"/v1/journeys/{journey_id}/results")
        if report.status_code != 200:
            continue
        body = report.json()
        runs, steps = body["runs"], body["steps"]
        line = (
            f"  {journey_id:<28} entered {runs['entered']:>5,}  sent"
            f" {sum(s['sent'] for s in steps):>5,}  opened {sum(s['opened'] for s in steps):>4,}"
            f"  clicked {sum(s['clicked'] for s in steps):>4,}  converted {runs['converted']:>4,}"
        )
        lift = (body.get("holdout") or {}).get("lift")
        if lift:
            line += f"  lift {lift['absolute'] * 100:+.1f} pts"
        lines.append(line)
    return lines


def run(
    platform: Platform,
    options: DemoOptions,
    out: TextIO,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    now = clock().replace(microsecond=0)
    config = model.ShopConfig(now, options.seed, options.customers, options.history_days)
    out.write(f"Kizuna demo: {options.customers:,} customers, {options.history_days:g} days of"
              f" history, then {options.rate:g} events/s live.\n")  # fmt: skip
    journey_ids = set_up_journeys(platform, now)
    out.write(f"Journeys (drafts until the history is in): {', '.join(journey_ids)}\n")
    sender = Sender(platform.client, platform.urls["ingest"], platform.write_key)
    history = list(model.backfill(config))
    out.write(f"Sending the history: {len(history):,} events…\n")
    out.flush()
    try:
        runner.send_backfill(history, sender.send)
    except Aborted as aborted:
        out.write(f"kizuna demo: {aborted}\n")
        return 1
    _settle(platform, config, sender, out)
    activate(platform, journey_ids)
    out.write("Journeys active. Live traffic starts; mail goes to the dev mailbox"
              f" ({platform.urls['notifier']}/v1/mailbox). Ctrl-C stops.\n")  # fmt: skip
    out.flush()
    engagement = Engagement(platform, random.Random(options.seed), options.open_share,
                            options.click_share)  # fmt: skip
    stopping = threading.Event()
    failure: list[BaseException] = []

    def pause(seconds: float) -> None:
        if stopping.wait(seconds):
            raise _Stopped

    def traffic() -> None:
        try:
            runner.send_live(
                live.stream(config, options.rate),
                sender.send,
                origin=config.now,
                duration=options.duration,
                sleep=pause,
            )
        except _Stopped:
            pass
        except Exception as error:  # reported by the main thread
            failure.append(error)
        finally:
            stopping.set()

    sending = threading.Thread(target=traffic, daemon=True)
    sending.start()
    try:
        while not stopping.wait(options.status_every):
            engagement.read_new_mail()
            out.write(status(platform, journey_ids, sender, engagement) + "\n")
            out.flush()
    except KeyboardInterrupt:
        stopping.set()
    sending.join(10)
    engagement.read_new_mail()
    out.write(status(platform, journey_ids, sender, engagement) + "\n")
    out.write("\n".join(summary(platform, journey_ids)) + "\n")
    out.flush()
    if failure:
        out.write(f"kizuna demo: live traffic stopped: {failure[0]}\n")
        return 1
    return 0


def _settle(
    platform: Platform, config: model.ShopConfig, sender: Sender, out: TextIO, timeout: float = 600
) -> None:
    """Waits until profile holds every order of the history (so the history does not trigger
    the journeys once they are active)."""
    first = config.start.date() - timedelta(days=1)
    wanted = len(sender.tally.orders)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, orders, _ = profile_totals(
            platform.client, platform.urls["profile"], platform.admin_key, first,
            datetime.now(UTC).date() + timedelta(days=1),
        )  # fmt: skip
        out.write(f"  profile holds {orders:,} of {wanted:,} orders\n")
        out.flush()
        if orders >= wanted:
            break
        time.sleep(5)
    time.sleep(5)  # and the segmenter and journey theirs

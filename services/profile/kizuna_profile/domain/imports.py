"""Bulk import of existing customers and historical orders: rows in, events out. Pure: no I/O.

Each row becomes the event that would have told us the same thing — ``identify`` for a
customer, ``Order Completed`` (and ``Order Refunded`` for a refunded or cancelled order) — with
an id derived from the row, so importing the same file again changes nothing."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import orjson

from kizuna.envelope import Envelope
from kizuna_profile.domain.identity import normalize_email, normalize_phone
from kizuna_profile.domain.record import CHANNELS
from kizuna_profile.domain.view import parse_birthday, valid_timezone

Kind = Literal["customers", "orders"]
Format = Literal["csv", "jsonl"]
TRAIT_NAMES = {
    "first_name": "firstName",
    "last_name": "lastName",
    "line_user_id": "lineUserId",
}
IDENTITY_COLUMNS = ("user_id", "email", "phone")
TIME_COLUMNS = ("created_at", "signed_up_at")
CONSENT_VALUES = {
    "granted": "granted", "true": "granted", "yes": "granted", "1": "granted",
    "revoked": "revoked", "false": "revoked", "no": "revoked", "0": "revoked",
}  # fmt: skip
ORDER_STATUSES = ("completed", "refunded", "cancelled")


class UnreadableFile(Exception):
    """The file as a whole cannot be read: nothing is imported."""


@dataclass(frozen=True)
class RowProblem:
    row: int
    field: str
    problem: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "problem": self.problem}


class _Invalid(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def rows(body: bytes, file_format: Format) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    """Data rows numbered from 1, or the problem that makes a row unreadable."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnreadableFile("the file must be UTF-8 text") from error
    if file_format == "jsonl":
        number = 0
        for line in text.splitlines():
            if not line.strip():
                continue
            number += 1
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield number, RowProblem(number, "(row)", "is not valid JSON")
                continue
            if isinstance(value, dict):
                yield number, value
            else:
                yield number, RowProblem(number, "(row)", "must be a JSON object")
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or not any(name.strip() for name in reader.fieldnames):
        raise UnreadableFile("a CSV file needs a header row naming its columns")
    for number, row in enumerate(reader, start=1):
        if None in row:
            yield number, RowProblem(number, "(row)", "has more fields than the header")
            continue
        yield number, {k.strip(): v for k, v in row.items() if k and v not in (None, "")}


def _text(row: dict[str, Any], name: str) -> str | None:
    value = row.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Invalid(name, "must be a string")
    return str(value).strip() or None


def _time(row: dict[str, Any], name: str) -> datetime | None:
    value = _text(row, name)
    if value is None:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError as error:
        raise _Invalid(name, "must be a date (YYYY-MM-DD) or an ISO 8601 time") from error
    if parsed.tzinfo is None:
        raise _Invalid(name, "must include a time zone (e.g. Z or +09:00)")
    return parsed.astimezone(UTC)


def _amount(row: dict[str, Any], name: str, *, required: bool) -> Decimal | None:
    value = row.get(name)
    if value is None or value == "":
        if required:
            raise _Invalid(name, "is required")
        return None
    if isinstance(value, bool):
        raise _Invalid(name, "must be a number")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as error:
        raise _Invalid(name, "must be a number") from error
    if not amount.is_finite() or amount < 0:
        raise _Invalid(name, "must be a number, 0 or more")
    return amount


def _row_id(kind: str, key: str, row: dict[str, Any]) -> str:
    digest = hashlib.sha256(orjson.dumps(row, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return f"import:{kind}:{key}:{digest}"


def _envelope(
    event_id: str, type_: str, workspace_id: str, key: str, at: datetime, now: datetime,
    payload: dict[str, Any],
) -> Envelope:  # fmt: skip
    return Envelope(
        id=event_id,
        type=type_,
        workspace_id=workspace_id,
        customer_key=key,
        occurred_at=at,
        received_at=now,
        payload={"type": type_, "messageId": event_id, **payload,
                 "context": {"source": "import"}},
    )  # fmt: skip


def customer_events(row: dict[str, Any], workspace_id: str, now: datetime) -> list[Envelope]:
    user_id = _text(row, "user_id")
    email_raw, phone_raw = _text(row, "email"), _text(row, "phone")
    email = normalize_email(email_raw) if email_raw else None
    if email_raw and email is None:
        raise _Invalid("email", "is not an email address")
    if phone_raw and normalize_phone(phone_raw) is None:
        raise _Invalid("phone", "is not a phone number")
    key = user_id or email or (phone_raw and normalize_phone(phone_raw))
    if not key:
        raise _Invalid("user_id", "a row needs user_id, email or phone")
    if row.get("birthday") and parse_birthday(_text(row, "birthday")) is None:
        raise _Invalid("birthday", "must be a date (YYYY-MM-DD)")
    if row.get("timezone") and valid_timezone(_text(row, "timezone")) is None:
        raise _Invalid("timezone", "must be an IANA time zone such as Asia/Tokyo")
    at = next((t for t in (_time(row, c) for c in TIME_COLUMNS) if t is not None), now)
    consent: dict[str, str] = {}
    for channel in CHANNELS:
        column = f"{channel}_consent"
        if row.get(column) not in (None, ""):
            status = CONSENT_VALUES.get(str(row[column]).strip().lower())
            if status is None:
                raise _Invalid(column, "must be granted or revoked (or true/false)")
            consent[channel] = status
    skipped = {"user_id", *TIME_COLUMNS, *(f"{c}_consent" for c in CHANNELS)}
    traits = {TRAIT_NAMES.get(k, k): v for k, v in row.items() if k not in skipped}
    event_id = _row_id("customer", key, row)
    identity = {"userId": user_id} if user_id else {}
    events = [
        _envelope(event_id, "identify", workspace_id, key, at, now, {**identity, "traits": traits})
    ]
    for channel, status in sorted(consent.items()):
        events.append(
            _envelope(
                f"{event_id}:consent:{channel}", "track", workspace_id, key, at, now,
                {**identity, "traits": traits, "event": "Consent Updated",
                 "properties": {"channel": channel, "status": status, "source": "import"}},
            )
        )  # fmt: skip
    return events


def order_events(row: dict[str, Any], workspace_id: str, now: datetime) -> list[Envelope]:
    order_id = _text(row, "order_id")
    if order_id is None:
        raise _Invalid("order_id", "is required")
    user_id, email_raw = _text(row, "user_id"), _text(row, "email")
    email = normalize_email(email_raw) if email_raw else None
    if email_raw and email is None:
        raise _Invalid("email", "is not an email address")
    key = user_id or email
    if key is None:
        raise _Invalid("user_id", "a row needs user_id or email")
    ordered_at = _time(row, "ordered_at")
    if ordered_at is None:
        raise _Invalid("ordered_at", "is required")
    total = _amount(row, "total", required=True)
    currency = _text(row, "currency")
    if currency is not None and not (len(currency) == 3 and currency.isalpha()):
        raise _Invalid("currency", "must be an ISO 4217 code such as JPY")
    status = (_text(row, "status") or "completed").lower()
    if status not in ORDER_STATUSES:
        raise _Invalid("status", f"must be one of {', '.join(ORDER_STATUSES)}")
    identity: dict[str, Any] = {"userId": user_id} if user_id else {}
    if email:
        identity["traits"] = {"email": email}
    properties: dict[str, Any] = {"order_id": order_id, "total": float(total or 0)}
    if currency:
        properties["currency"] = currency.upper()
    events = [
        _envelope(
            f"import:order:{order_id}", "track", workspace_id, key, ordered_at, now,
            {**identity, "event": "Order Completed", "properties": properties},
        )
    ]  # fmt: skip
    if status != "completed":
        events.append(
            _envelope(
                f"import:refund:{order_id}", "track", workspace_id, key, ordered_at, now,
                {**identity, "event": "Order Refunded", "properties": {"order_id": order_id}},
            )
        )  # fmt: skip
    return events


def to_events(
    kind: Kind, number: int, row: dict[str, Any], workspace_id: str, now: datetime
) -> list[Envelope] | RowProblem:
    convert = customer_events if kind == "customers" else order_events
    try:
        return convert(row, workspace_id, now)
    except _Invalid as error:
        return RowProblem(number, error.field, error.problem)

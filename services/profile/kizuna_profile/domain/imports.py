"""Bulk import of existing customers and historical orders: rows in, events out. Pure: no I/O.

Each row becomes the event that would have told us the same thing — ``identify`` for a
customer (and ``Consent Updated`` per consent column), ``Order Completed`` (and
``Order Refunded`` for a refunded or cancelled order) for an order — with an id derived from
the row, so importing the same file again changes nothing. A row that is not valid is
reported with its number, the field at fault and the problem, and skipped."""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from kizuna.envelope import Envelope
from kizuna_profile.domain.identity import normalize_email, normalize_phone
from kizuna_profile.domain.record import CHANNELS
from kizuna_profile.domain.view import valid_timezone

Kind = Literal["customers", "orders"]
Format = Literal["csv", "jsonl"]
Row = dict[str, Any]
TRAIT_NAMES = {"first_name": "firstName", "last_name": "lastName", "line_user_id": "lineUserId"}
TIME_COLUMNS = ("created_at", "signed_up_at")
CONSENT_COLUMNS = {f"{channel}_consent": channel for channel in CHANNELS}
NOT_TRAITS = frozenset({"user_id", *TIME_COLUMNS, *CONSENT_COLUMNS})
KNOWN_COLUMNS = frozenset(
    {*NOT_TRAITS, *TRAIT_NAMES, "email", "phone", "birthday", "timezone", "locale"}
    | {"order_id", "ordered_at", "total", "currency", "status"}
)
CONSENT_VALUES = {
    "granted": "granted", "true": "granted", "yes": "granted", "1": "granted",
    "revoked": "revoked", "false": "revoked", "no": "revoked", "0": "revoked",
}  # fmt: skip
ORDER_STATUSES = ("completed", "refunded", "cancelled")
MAX_ID_LENGTH = 255  # the event id embeds it; an envelope id holds 400 characters
MAX_TOTAL = Decimal(10) ** 15
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(hours=1)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


class UnreadableFile(Exception):
    """The file as a whole cannot be read: nothing is imported."""


@dataclass(frozen=True)
class RowProblem:
    row: int
    field: str
    problem: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "problem": self.problem}


ParsedRow = tuple[int, Row | RowProblem]


class _Invalid(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class ImportFile:
    """A decoded file whose rows are read lazily, so a large file is never held twice."""

    format: Format
    text: str

    def rows(self) -> Iterator[ParsedRow]:
        """Data rows numbered from 1 by their position after the CSV header (or by line, for
        JSON Lines): blank rows are skipped but keep their number, so row n is line n + 1 of
        a CSV file and line n of a JSON Lines file (multi-line quoted CSV fields aside)."""
        return _csv_rows(self.text) if self.format == "csv" else _jsonl_rows(self.text)

    def count(self) -> int:
        """How many rows ``rows()`` yields, without building them."""
        if self.format == "jsonl":
            return sum(1 for line in _lines(self.text) if line.strip())
        reader = csv.reader(_lines(self.text))
        _csv_header(reader)
        total = 0
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return total
            except csv.Error:
                total += 1  # reported as a row that cannot be read
                continue
            total += any(value.strip() for value in values)


def _lines(text: str) -> Iterator[str]:
    """Lines ended by \\n only (not by U+2028 as ``splitlines`` would), without the copy of the
    whole text that io.StringIO makes."""
    start, size = 0, len(text)
    while start < size:
        end = text.find("\n", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start : end + 1]
        start = end + 1


def read_file(body: bytes | bytearray, file_format: Format) -> ImportFile:
    """Checks what would make the whole file unreadable; the rows are checked one by one."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnreadableFile(f"the file must be UTF-8 text (byte {error.start} is not)") from error
    if file_format == "csv":
        _csv_header(csv.reader(_lines(text)))
    found = ImportFile(file_format, text)
    if next(found.rows(), None) is None:
        raise UnreadableFile("the file holds no rows")
    return found


def _column(name: str) -> str:
    name = name.strip()
    return name.lower() if name.lower() in KNOWN_COLUMNS else name


def _csv_header(reader: Iterator[list[str]]) -> list[str]:
    try:
        header = next((record for record in reader if any(v.strip() for v in record)), None)
    except csv.Error as error:
        raise UnreadableFile(f"the CSV header cannot be read: {error}") from error
    if header is None:
        raise UnreadableFile("a CSV file needs a header row naming its columns")
    names = [_column(name) for name in header]
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        raise UnreadableFile(f"the CSV header names {', '.join(repeated)} more than once")
    return names


def _csv_rows(text: str) -> Iterator[ParsedRow]:
    reader = csv.reader(_lines(text))
    names = _csv_header(reader)
    number = 0
    while True:
        number += 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield number, RowProblem(number, "(row)", f"cannot be read as CSV: {error}")
            continue
        values = [value.strip() for value in values]
        if not any(values):
            continue
        if len(values) > len(names) and any(values[len(names) :]):
            yield number, RowProblem(number, "(row)", "has more fields than the header")
        elif any("\x00" in value for value in values):
            yield number, RowProblem(number, "(row)", "contains a NUL character")
        else:
            yield (
                number,
                {name: value for name, value in zip(names, values, strict=False) if name and value},
            )


def _jsonl_rows(text: str) -> Iterator[ParsedRow]:
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            yield number, RowProblem(number, "(row)", "is not valid JSON")
            continue
        if not isinstance(value, dict):
            yield number, RowProblem(number, "(row)", "must be a JSON object")
        elif "\\u0000" in line and _has_nul(value):
            yield number, RowProblem(number, "(row)", "contains a NUL character")
        else:
            yield number, value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _text(row: Row, name: str, *, limit: int | None = None) -> str | None:
    value = row.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Invalid(name, "must be a string")
    text = str(value).strip()
    if limit is not None and len(text) > limit:
        raise _Invalid(name, f"must be at most {limit} characters")
    return text or None


def _time(row: Row, name: str, now: datetime) -> datetime | None:
    value = _text(row, name)
    if value is None:
        return None
    try:
        if _DATE.match(value):
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        else:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                raise _Invalid(name, "must include a time zone (e.g. Z or +09:00)")
            parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError) as error:
        raise _Invalid(name, "must be a date (YYYY-MM-DD) or an ISO 8601 time") from error
    if not EARLIEST <= parsed <= now + CLOCK_SKEW:
        raise _Invalid(name, "must be between 1970 and now")
    return parsed


def _email(row: Row) -> str | None:
    raw = _text(row, "email", limit=MAX_ID_LENGTH)
    email = normalize_email(raw) if raw else None
    if raw and email is None:
        raise _Invalid("email", "is not an email address")
    return email


def _total(row: Row) -> int | float:
    value = row.get("total")
    if value is None or value == "":
        raise _Invalid("total", "is required")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Invalid("total", "must be a number")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as error:
        raise _Invalid("total", "must be a number") from error
    if not amount.is_finite() or amount < 0:
        raise _Invalid("total", "must be a number, 0 or more")
    if amount >= MAX_TOTAL:
        raise _Invalid("total", "is too large")
    return int(amount) if amount == amount.to_integral_value() else float(amount)


def _envelope(
    event_id: str, type_: str, workspace_id: str, key: str, at: datetime, received: datetime,
    payload: dict[str, Any],
) -> Envelope:  # fmt: skip
    return Envelope(
        id=event_id,
        type=type_,
        workspace_id=workspace_id,
        customer_key=key,
        occurred_at=at,
        received_at=received,
        payload={"type": type_, "messageId": event_id, **payload,
                 "context": {"source": "import"}},
    )  # fmt: skip


def customer_events(row: Row, number: int, workspace_id: str, now: datetime) -> list[Envelope]:
    user_id = _text(row, "user_id", limit=MAX_ID_LENGTH)
    email = _email(row)
    phone_raw = _text(row, "phone", limit=MAX_ID_LENGTH)
    phone = normalize_phone(phone_raw) if phone_raw else None
    if phone_raw and phone is None:
        raise _Invalid("phone", "is not a phone number")
    key = user_id or email or phone
    if key is None:
        raise _Invalid("user_id", "a row needs user_id, email or phone")
    traits: dict[str, Any] = {
        TRAIT_NAMES.get(name, name): value
        for name, value in row.items()
        if name not in NOT_TRAITS and value is not None and value != ""
    }
    identity = {
        "email": email,
        "phone": phone,
        "lineUserId": _text(row, "line_user_id", limit=MAX_ID_LENGTH),
    }
    traits.update({name: value for name, value in identity.items() if value is not None})
    birthday = _text(row, "birthday")
    if birthday is not None:
        try:
            born = date.fromisoformat(birthday) if _DATE.match(birthday) else None
        except ValueError:
            born = None
        if born is None:
            raise _Invalid("birthday", "must be a date (YYYY-MM-DD)")
        if born > now.date():
            raise _Invalid("birthday", "must not be in the future")
    timezone = _text(row, "timezone")
    if timezone is not None and valid_timezone(timezone) is None:
        raise _Invalid("timezone", "must be an IANA time zone such as Asia/Tokyo")
    locale = _text(row, "locale")
    if locale is not None and not _LOCALE.match(locale):
        raise _Invalid("locale", "must be a language tag such as ja-JP")
    consent: dict[str, str] = {}
    for column, channel in CONSENT_COLUMNS.items():
        given = row.get(column)
        if given is not None and given != "":
            status = CONSENT_VALUES.get(str(given).strip().lower())
            if status is None:
                raise _Invalid(column, "must be granted or revoked (or true/false)")
            consent[channel] = status
    at = next((t for t in (_time(row, c, now) for c in TIME_COLUMNS) if t is not None), None)
    received = now
    if at is None:
        # Stamped at the import plus its row number in microseconds: when a file names
        # someone twice, the later row's traits win.
        at = received = now + timedelta(microseconds=number)
    digest = hashlib.sha256(orjson.dumps(row, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    event_id = f"import:{workspace_id}:customer:{key}:{digest}"
    who: dict[str, Any] = {"userId": user_id} if user_id else {}
    events = [
        _envelope(event_id, "identify", workspace_id, key, at, received,
                  {**who, "traits": traits}),
    ]  # fmt: skip
    linking = {name: value for name, value in identity.items() if value is not None}
    for channel, status in sorted(consent.items()):
        properties = {"channel": channel, "status": status, "source": "import"}
        events.append(
            _envelope(f"{event_id}:consent:{channel}", "track", workspace_id, key, at, received,
                      {**who, "traits": linking, "event": "Consent Updated",
                       "properties": properties}),
        )  # fmt: skip
    return events


def order_events(row: Row, workspace_id: str, now: datetime) -> list[Envelope]:
    order_id = _text(row, "order_id", limit=MAX_ID_LENGTH)
    if order_id is None:
        raise _Invalid("order_id", "is required")
    user_id = _text(row, "user_id", limit=MAX_ID_LENGTH)
    email = _email(row)
    key = user_id or email
    if key is None:
        raise _Invalid("user_id", "a row needs user_id or email")
    ordered_at = _time(row, "ordered_at", now)
    if ordered_at is None:
        raise _Invalid("ordered_at", "is required")
    total = _total(row)
    currency = _text(row, "currency")
    if currency is not None and not (
        len(currency) == 3 and currency.isascii() and currency.isalpha()
    ):
        raise _Invalid("currency", "must be an ISO 4217 code such as JPY")
    status = (_text(row, "status") or "completed").lower()
    if status not in ORDER_STATUSES:
        raise _Invalid("status", f"must be one of {', '.join(ORDER_STATUSES)}")
    who: dict[str, Any] = {"userId": user_id} if user_id else {}
    if email:
        who["traits"] = {"email": email}
    properties: dict[str, Any] = {"order_id": order_id, "total": total}
    if currency:
        properties["currency"] = currency.upper()
    prefix = f"import:{workspace_id}"
    events = [
        _envelope(f"{prefix}:order:{order_id}", "track", workspace_id, key, ordered_at, now,
                  {**who, "event": "Order Completed", "properties": properties}),
    ]  # fmt: skip
    if status != "completed":
        events.append(
            _envelope(f"{prefix}:refund:{order_id}", "track", workspace_id, key, ordered_at, now,
                      {**who, "event": "Order Refunded", "properties": {"order_id": order_id}}),
        )  # fmt: skip
    return events


def to_events(
    kind: Kind, number: int, row: Row, workspace_id: str, now: datetime
) -> list[Envelope] | RowProblem:
    """The row's events, or why it is refused. ``now`` is when the import was received."""
    try:
        if kind == "customers":
            return customer_events(row, number, workspace_id, now)
        return order_events(row, workspace_id, now)
    except _Invalid as error:
        return RowProblem(number, error.field, error.problem)
    except ValidationError as error:  # guarded above; a safety net, not a path
        return RowProblem(number, "(row)", f"cannot be stored: {error.errors()[0]['msg']}")

"""Message templates: parts per channel, locale variants with fallback, Jinja2 in a sandbox.

Saving checks that every part parses, names only known variables and renders against a
sample; a problem names the part, the line and the reason. Pure: no I/O."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, field_validator

Channel = Literal["email", "line", "sms", "webhook"]
VARIABLES = frozenset(
    {"customer", "data", "journey", "workspace", "message", "unsubscribe_url", "preferences_url"}
)
TEXT_PARTS = ("subject", "preheader", "html", "text")
LOCALE = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"

_text_env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
_html_env = SandboxedEnvironment(autoescape=True, keep_trailing_newline=True)


class Parts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(default=None, max_length=2000)
    preheader: str | None = Field(default=None, max_length=2000)
    html: str | None = Field(default=None, max_length=500_000)
    text: str | None = Field(default=None, max_length=200_000)
    messages: list[dict[str, Any]] | None = Field(
        default=None, max_length=5, description="LINE message objects; their strings render"
    )
    body: dict[str, Any] | None = Field(default=None, description="Webhook JSON; strings render")


class TemplateBody(Parts):
    name: str = Field(default="", max_length=200)
    channel: Channel
    topic: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$",
        description="Subscription group (news, promotions…) a recipient can leave alone",
    )
    locales: dict[str, Parts] = Field(default_factory=dict, max_length=50)

    @field_validator("locales")
    @classmethod
    def _locale_names(cls, value: dict[str, Parts]) -> dict[str, Parts]:
        for name in value:
            if re.match(LOCALE, name) is None:
                raise ValueError(f"{name!r} is not a locale such as ja, en or pt-BR")
        return value

    def parts_for(self, locale: str | None) -> Parts:
        """The locale's parts, falling back field by field to its language, then the default:
        ``ja-JP`` → ``ja`` → default."""
        chain = []
        if locale:
            chain.append(locale)
            if "-" in locale:
                chain.append(locale.split("-")[0])
        chosen: dict[str, Any] = {}
        for name in Parts.model_fields:
            for candidate in chain:
                variant = self.locales.get(candidate)
                if variant is not None and getattr(variant, name) is not None:
                    chosen[name] = getattr(variant, name)
                    break
            else:
                chosen[name] = getattr(self, name)
        return Parts(**chosen)


@dataclass(frozen=True)
class Problem:
    field: str
    problem: str


class RenderFailed(Exception):
    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"{part}: {reason}")
        self.part = part
        self.reason = reason


SAMPLE_CONTEXT: dict[str, Any] = {
    "customer": {
        "id": "kz_sample",
        "email": "hanako@example.com",
        "first_name": "Hanako",
        "last_name": "Yamada",
        "traits": {"first_name": "Hanako", "plan": "gold"},
        "segments": ["champions"],
        "rfm": {"tier": "champions", "recency": 5, "frequency": 5, "monetary": 5},
        "cart": {"items": [{"name": "Sencha", "price": 1200, "quantity": 1}], "value": 1200},
        "favourite_category": "tea",
    },
    "data": {"coupon": "SAMPLE10", "properties": {}},
    "journey": {"id": "sample", "version": 1, "step": "mail"},
    "workspace": {"id": "ws_sample", "name": "Sample shop"},
    "message": {"id": "send:sample"},
    "unsubscribe_url": "https://example.com/unsubscribe",
    "preferences_url": "https://example.com/preferences",
}


def _environment(part: str) -> SandboxedEnvironment:
    return _html_env if part == "html" else _text_env


def _strings(value: Any, path: str) -> list[tuple[str, str]]:
    """Every string inside a JSON value, with its path (LINE messages, webhook bodies)."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, list):
        return [s for i, item in enumerate(value) for s in _strings(item, f"{path}.{i}")]
    if isinstance(value, dict):
        return [s for k, item in value.items() for s in _strings(item, f"{path}.{k}")]
    return []


def _sources(parts: Parts, prefix: str) -> list[tuple[str, str]]:
    found = [
        (f"{prefix}{name}", getattr(parts, name))
        for name in TEXT_PARTS
        if getattr(parts, name) is not None
    ]
    if parts.messages is not None:
        found += _strings(parts.messages, f"{prefix}messages")
    if parts.body is not None:
        found += _strings(parts.body, f"{prefix}body")
    return found


def _part_kind(path: str) -> str:
    return path.rsplit(".", 1)[-1] if path.endswith("html") else "text"


def check(template: TemplateBody) -> list[Problem]:
    problems: list[Problem] = []
    required = {
        "email": ("subject",),
        "line": (),
        "sms": ("text",),
        "webhook": (),
    }[template.channel]
    for name in required:
        if getattr(template, name) is None:
            problems.append(Problem(name, f"a {template.channel} template needs a {name}"))
    if template.channel == "email" and template.html is None and template.text is None:
        problems.append(Problem("html", "an email template needs html or text"))
    if template.channel == "line" and template.text is None and template.messages is None:
        problems.append(Problem("text", "a LINE template needs text or messages"))
    if template.channel == "webhook" and template.body is None:
        problems.append(Problem("body", "a webhook template needs a JSON body"))
    sources = _sources(template, "")
    for name, variant in template.locales.items():
        sources += _sources(variant, f"locales.{name}.")
    for path, source in sources:
        problems.extend(_check_source(path, source))
    if not problems:
        chosen: list[str | None] = [None, *template.locales]
        for locale in chosen:
            try:
                render(template, SAMPLE_CONTEXT, locale)
            except RenderFailed as error:
                where = f"locales.{locale}.{error.part}" if locale else error.part
                problems.append(Problem(where, f"does not render with a sample: {error.reason}"))
    return problems


def _check_source(path: str, source: str) -> list[Problem]:
    env = _environment(_part_kind(path))
    try:
        parsed = env.parse(source)
    except jinja2.TemplateSyntaxError as error:
        return [Problem(path, f"line {error.lineno}: {error.message}")]
    unknown = sorted(meta.find_undeclared_variables(parsed) - VARIABLES)
    if unknown:
        line = _first_line(source, unknown[0])
        return [
            Problem(
                path,
                f"line {line}: unknown variable {unknown[0]!r}; use one of {sorted(VARIABLES)}",
            )
        ]
    return []


def _first_line(source: str, name: str) -> int:
    for number, text in enumerate(source.splitlines(), start=1):
        if name in text:
            return number
    return 1


@functools.lru_cache(maxsize=256)
def _compiled(kind: str, source: str) -> jinja2.Template:
    """Compiling is ~30x the cost of rendering; a template's parts repeat for every send."""
    return _environment(kind).from_string(source)


def _render_string(path: str, source: str, context: Mapping[str, Any]) -> str:
    try:
        return _compiled(_part_kind(path), source).render(**context)
    except jinja2.TemplateError as error:
        line = getattr(error, "lineno", None)
        raise RenderFailed(path, f"line {line}: {error}" if line else str(error)) from error
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as error:
        raise RenderFailed(path, f"{type(error).__name__}: {error}") from error


def _render_json(value: Any, path: str, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _render_string(path, value, context)
    if isinstance(value, list):
        return [_render_json(item, f"{path}.{i}", context) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {k: _render_json(item, f"{path}.{k}", context) for k, item in value.items()}
    return value


def render(template: TemplateBody, context: Mapping[str, Any], locale: str | None) -> Parts:
    """Every part rendered for ``locale``; raises RenderFailed naming the part at fault."""
    parts = template.parts_for(locale)
    rendered: dict[str, Any] = {}
    for name in TEXT_PARTS:
        source = getattr(parts, name)
        rendered[name] = None if source is None else _render_string(name, source, context)
    if parts.messages is not None:
        rendered["messages"] = _render_json(parts.messages, "messages", context)
    if parts.body is not None:
        rendered["body"] = _render_json(parts.body, "body", context)
    return Parts(**rendered)

"""What to do with one send request: skip it (consent, suppression, no address), fail it
(no template, does not render, channel not served yet) or send it. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kizuna_notifier.domain import line, templates
from kizuna_notifier.domain.templates import Parts, TemplateBody

WELL_KNOWN = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "name",
    "birthday",
    "locale",
    "timezone",
    "lineUserId",
)


class SendRequest(BaseModel):
    """The payload of ``send.requested`` (docs/events.md); unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    send_id: str = Field(min_length=1, max_length=400)
    customer_id: str = Field(min_length=1, max_length=400)
    channel: str
    category: str = "marketing"
    template: str | None = None
    url: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    customer: dict[str, Any] = Field(default_factory=dict)
    journey_id: str | None = None
    journey_version: int | None = None
    run_id: str | None = None
    step_id: str | None = None


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class Fail:
    reason: str


@dataclass(frozen=True)
class Mail:
    parts: Parts
    recipient: str
    topic: str | None


@dataclass(frozen=True)
class Push:
    """A LINE push: rendered message objects for the customer's LINE user id."""

    messages: list[dict[str, Any]]
    recipient: str
    topic: str | None


@dataclass(frozen=True)
class Hook:
    url: str
    body: Any


Decision = Skip | Fail | Mail | Push | Hook


def customer_variables(request: SendRequest) -> dict[str, Any]:
    """``customer`` in templates: well-known traits at the top, all of them under ``traits``."""
    traits = request.customer.get("traits") or {}
    top = {name: traits[name] for name in WELL_KNOWN if name in traits}
    if "first_name" not in top and "firstName" in traits:
        top["first_name"] = traits["firstName"]
    return {**top, **request.customer, "id": request.customer_id, "traits": traits}


def decide(
    request: SendRequest,
    consent: Mapping[str, str],
    template: TemplateBody | None,
    links: Mapping[str, str],
    workspace: Mapping[str, Any],
) -> Decision:
    """``consent``: channel → granted, revoked or suppressed, for this customer."""
    if request.channel == "webhook":
        return _hook(request, consent, template, workspace)
    if request.channel not in ("email", "line"):
        return Fail(f"the {request.channel} channel is not delivered yet")
    stated = consent.get(request.channel)
    if stated == "suppressed":
        return Skip("suppressed")
    if stated == "revoked":
        return Skip("consent")
    if template is None:
        return Fail(f"no template {request.template!r}")
    if template.channel != request.channel:
        return Fail(f"template {request.template!r} is a {template.channel} template")
    if template.topic and consent.get(f"{request.channel}/{template.topic}") == "revoked":
        return Skip(f"unsubscribed from {template.topic}")
    customer = customer_variables(request)
    recipient = customer.get("email" if request.channel == "email" else "lineUserId")
    if not isinstance(recipient, str) or (request.channel == "email" and "@" not in recipient):
        return Skip("no_address")
    context = {
        "customer": customer,
        "data": request.data,
        "journey": {
            "id": request.journey_id,
            "version": request.journey_version,
            "step": request.step_id,
        },
        "workspace": dict(workspace),
        "message": {"id": request.send_id},
        **links,
    }
    locale = customer.get("locale")
    try:
        parts = templates.render(template, context, locale if isinstance(locale, str) else None)
    except templates.RenderFailed as error:
        return Fail(f"render: {error.part}: {error.reason}")
    if request.channel == "line":
        messages = line.messages(parts)
        if not messages:
            return Fail(f"template {request.template!r} has no LINE message or text")
        return Push(messages, recipient, template.topic)
    return Mail(parts, recipient, template.topic)


def _hook(
    request: SendRequest,
    consent: Mapping[str, str],
    template: TemplateBody | None,
    workspace: Mapping[str, Any],
) -> Decision:
    """The webhook step: the template's JSON body rendered, or the step's data as it is."""
    if consent.get("webhook") in ("revoked", "suppressed"):
        return Skip("consent")
    if not request.url:
        return Fail("a webhook send needs a url")
    if request.template is None:
        return Hook(request.url, {"customer_id": request.customer_id, "data": request.data})
    if template is None:
        return Fail(f"no template {request.template!r}")
    if template.channel != "webhook" or template.body is None:
        return Fail(f"template {request.template!r} is not a webhook template")
    context = {
        "customer": customer_variables(request),
        "data": request.data,
        "journey": {
            "id": request.journey_id,
            "version": request.journey_version,
            "step": request.step_id,
        },
        "workspace": dict(workspace),
        "message": {"id": request.send_id},
    }
    try:
        parts = templates.render(template, context, None)
    except templates.RenderFailed as error:
        return Fail(f"render: {error.part}: {error.reason}")
    return Hook(request.url, parts.body)

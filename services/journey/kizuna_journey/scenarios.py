"""The standard CRM scenarios as ready-to-edit journey drafts, with the default templates they
name (created in the notifier, issue #7; until then they are returned for reference)."""

from __future__ import annotations

from typing import Any

Scenario = dict[str, Any]


def _send(template: str, next_step: str | None = None, **extra: Any) -> dict[str, Any]:
    step: dict[str, Any] = {"type": "send", "channel": "email", "template": template, **extra}
    if next_step:
        step["next"] = next_step
    return step


def cart_abandonment(options: dict[str, Any]) -> Scenario:
    return {
        "name": "Cart abandonment",
        "description": "Product added to the cart or checkout started, no order within 1 h:"
        " reminder with the cart's items; still none after 24 h: a coupon.",
        "trigger": {
            "type": "event",
            "event": options.get("event", ["Product Added", "Checkout Started"]),
        },
        "entry": {"policy": "once_per", "period": "P1D"},
        "goal": {"event": "Order Completed", "within": "P7D", "exit_on_goal": True},
        "holdout_percent": options.get("holdout_percent", 10),
        "start": "wait_order",
        "steps": {
            "wait_order": {
                "type": "wait_for_event",
                "event": "Order Completed",
                "timeout": options.get("first_wait", "PT1H"),
                "on_timeout": "reminder",
            },
            "reminder": _send("cart-reminder", "wait_again"),
            "wait_again": {
                "type": "wait_for_event",
                "event": "Order Completed",
                "timeout": options.get("second_wait", "P1D"),
                "on_timeout": "coupon",
            },
            "coupon": _send("cart-coupon", data={"coupon": options.get("coupon", "CART10")}),
        },
    }


def birthday(options: dict[str, Any]) -> Scenario:
    return {
        "name": "Birthday coupon",
        "trigger": {
            "type": "date",
            "trait": "birthday",
            "at": options.get("at", "09:00"),
            "offset_days": options.get("offset_days", 0),
        },
        "goal": {"event": "Order Completed", "within": "P14D", "exit_on_goal": False},
        "start": "coupon",
        "steps": {
            "coupon": _send("birthday-coupon", data={"coupon": options.get("coupon", "HBD20")})
        },
    }


def dormant_reactivation(options: dict[str, Any]) -> Scenario:
    trigger: dict[str, Any] = {"type": "segment", "segment": ["hibernating", "at_risk"]}
    if options.get("via") == "inactivity":
        days = int(options.get("days", 90))
        trigger = {"type": "inactivity", "event": "Order Completed", "for": f"P{days}D"}
    return {
        "name": "Dormant reactivation",
        "description": "No order for a long time: a win-back coupon and picks from the"
        " customer's favourite category.",
        "trigger": trigger,
        "entry": {"policy": "once_per", "period": "P90D"},
        "goal": {"event": "Order Completed", "within": "P30D", "exit_on_goal": True},
        "holdout_percent": options.get("holdout_percent", 10),
        "start": "winback",
        "steps": {
            "winback": _send(
                "winback-coupon",
                data={"coupon": options.get("coupon", "COMEBACK15"), "recommend": "category"},
            )
        },
    }


def post_purchase(options: dict[str, Any]) -> Scenario:
    replenish = int(options.get("replenishment_days", 30))
    review = int(options.get("review_days", 7))
    return {
        "name": "Post-purchase follow-up",
        "trigger": {"type": "event", "event": "Order Completed"},
        "start": "thanks",
        "steps": {
            "thanks": _send("order-thanks", "wait_review", category="transactional"),
            "wait_review": {"type": "wait", "duration": f"P{review}D", "next": "review"},
            "review": _send("review-request", "wait_replenish"),
            "wait_replenish": {
                "type": "wait",
                "duration": f"P{max(replenish - review, 1)}D",
                "next": "replenish",
            },
            "replenish": _send("replenishment-reminder"),
        },
    }


def download_follow_up(options: dict[str, Any]) -> Scenario:
    return {
        "name": "Download follow-up",
        "description": "Asset downloaded: after a day, the seminar on the same topic, unless"
        " already registered.",
        "trigger": {"type": "event", "event": "Asset Downloaded"},
        "exit": [{"event": "Seminar Registered"}],
        "goal": {"event": "Seminar Registered", "within": "P14D"},
        "start": "wait",
        "steps": {
            "wait": {"type": "wait", "duration": options.get("delay", "P1D"), "next": "check"},
            "check": {
                "type": "condition",
                "if": {"event": "Seminar Registered", "min_count": 1, "within_days": 30},
                "else": "invite",
            },
            "invite": _send("seminar-invitation"),
        },
    }


def welcome(options: dict[str, Any]) -> Scenario:
    gap = options.get("gap", "P2D")
    return {
        "name": "Welcome series",
        "trigger": {"type": "event", "event": options.get("event", "Newsletter Subscribed")},
        "entry": {"policy": "once"},
        "start": "welcome_1",
        "steps": {
            "welcome_1": _send("welcome-1", "wait_1"),
            "wait_1": {"type": "wait", "duration": gap, "next": "welcome_2"},
            "welcome_2": _send("welcome-2", "wait_2"),
            "wait_2": {"type": "wait", "duration": gap, "next": "welcome_3"},
            "welcome_3": _send("welcome-3"),
        },
    }


def vip(options: dict[str, Any]) -> Scenario:
    return {
        "name": "VIP early access",
        "trigger": {"type": "segment", "segment": options.get("tier", "champions")},
        "entry": {"policy": "once_per", "period": "P30D"},
        "start": "offer",
        "steps": {"offer": _send("vip-early-access")},
    }


SCENARIOS = {
    "cart-abandonment": cart_abandonment,
    "birthday": birthday,
    "dormant-reactivation": dormant_reactivation,
    "post-purchase": post_purchase,
    "download-follow-up": download_follow_up,
    "welcome": welcome,
    "vip": vip,
}

DEFAULT_TEMPLATES: dict[str, dict[str, str]] = {
    "cart-reminder": {
        "subject": "You left something in your cart",
        "text": "Hi {{ customer.first_name or 'there' }}, your cart is waiting:"
        "{% for item in data.properties.products or [] %}\n- {{ item.name }}{% endfor %}",
    },
    "cart-coupon": {
        "subject": "A little something to finish your order",
        "text": "Use {{ data.coupon }} for a discount on the items in your cart.",
    },
    "birthday-coupon": {
        "subject": "Happy birthday, {{ customer.first_name }}!",
        "text": "Celebrate with {{ data.coupon }}.",
    },
    "winback-coupon": {
        "subject": "We miss you",
        "text": "New in {{ customer.favourite_category }} — and {{ data.coupon }} for you.",
    },
    "order-thanks": {"subject": "Thank you for your order", "text": "We are preparing it."},
    "review-request": {"subject": "How was it?", "text": "Tell us what you think."},
    "replenishment-reminder": {"subject": "Running low?", "text": "Reorder in one click."},
    "seminar-invitation": {
        "subject": "A seminar on {{ data.properties.asset_topic }}",
        "text": "Since you read {{ data.properties.asset_title }}, join us live.",
    },
    "welcome-1": {"subject": "Welcome!", "text": "Glad to have you."},
    "welcome-2": {"subject": "Getting started", "text": "Here is what we do best."},
    "welcome-3": {"subject": "Our favourites", "text": "Picked for you."},
    "vip-early-access": {
        "subject": "Early access, just for you",
        "text": "As one of our best customers, shop the new season first.",
    },
}


def templates_of(scenario: Scenario) -> list[dict[str, str]]:
    names = [
        step["template"]
        for step in scenario["steps"].values()
        if isinstance(step, dict) and step.get("type") == "send"
    ]
    return [{"id": name, "channel": "email", **DEFAULT_TEMPLATES[name]} for name in names]

"""The live phase: visits from the end of the history on, at about a given rate of calls a
second, in time order, forever. Pure and seeded like the history (``kizuna.shop.model``)."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from kizuna.shop.model import SEMINAR_SHARE, ShopConfig, customers
from kizuna.shop.people import Customer, make_customer, new_uuid
from kizuna.shop.sessions import SimEvent, Visitor, iso, seminar, visit

PACE = 8.0  # mean seconds between two calls of a live visit
ANONYMOUS, NEWCOMERS = 0.1, 0.1  # shares of live visits
WARM_UP = timedelta(minutes=3)  # visits under way when the stream starts


def stream(config: ShopConfig, rate: float) -> Iterator[SimEvent]:
    """Visits from ``config.now`` on, about ``rate`` calls a second, in time order, forever:
    returning customers (the more often the better their persona), newcomers who sign up and
    anonymous visitors. Ids carry the start time, so each live run adds new events.

    A visit lasts a minute or two, so the stream starts as if it had been running: visits of
    known customers begun in the warm-up before ``config.now`` send only what comes after it.
    """
    rng = random.Random(f"kizuna-shop:{config.seed}:live:{iso(config.now)}")
    tag = config.now.strftime("%Y%m%dT%H%M%SZ")
    people = customers(config)
    weights = list(itertools.accumulate(c.persona.visits for c in people))
    browsers: dict[int, Visitor] = {}
    busy: dict[str, datetime] = {}  # when a visitor's current visit ends
    pending: list[tuple[datetime, int, SimEvent]] = []
    order = itertools.count()
    warm_up = WARM_UP if config.has_history and config.customers else timedelta(0)
    at, visits, made, anonymous = config.now - warm_up, 0, 0, 0
    while True:
        mean = made / visits if visits else 6.0
        at += timedelta(seconds=rng.expovariate(rate / mean))
        while pending and pending[0][0] <= at:
            event = heapq.heappop(pending)[2]
            if event.at >= config.now:
                yield event
        warming = at < config.now  # only customers who signed up long ago: nothing is lost
        draw = 1.0 if warming else rng.random()
        if draw < ANONYMOUS:
            anonymous += 1
            visitor = Visitor(None, new_uuid(rng), f"sim-{config.seed}-L{tag}-a{anonymous}", "")
            kind = "browse"
        else:
            if draw < ANONYMOUS + NEWCOMERS or not people:
                customer = make_customer(config.seed, len(people), config.now)
                people.append(customer)
                weights.append(weights[-1] if weights else 0.0)  # not drawn again as regular
                known = False
            else:
                customer = rng.choices(people, cum_weights=weights)[0]
                known = config.has_history and customer.index < config.customers
            visitor = browsers.setdefault(
                customer.index,
                Visitor(
                    customer,
                    customer.anonymous_id,
                    f"sim-{config.seed}-L{tag}-{customer.index}",
                    f"SIM{config.seed}-L{tag}-{customer.index:05d}",
                    identified=known,
                ),
            )
            kind = _live_kind(rng, customer)
        # Until someone has signed up their visits follow one another; after, they may overlap
        # (two tabs), though not the sign-up itself: identify comes before their userId.
        start = max(at, busy.get(visitor.message_prefix, at))
        events = visit(rng, visitor, start, kind, pace=PACE, signs_up=rng.random() < 0.5)
        if kind == "download" and events and rng.random() < SEMINAR_SHARE:
            topic = str(events[-1].call["properties"]["asset_topic"])
            events.append(seminar(visitor, events[-1].at + timedelta(minutes=5), topic))
        for event in events:
            heapq.heappush(pending, (event.at, next(order), event))
        if not visitor.identified and events:
            busy[visitor.message_prefix] = events[-1].at + timedelta(seconds=30)
        else:
            signed_up = [e.at for e in events if e.call["type"] == "identify"]
            busy[visitor.message_prefix] = signed_up[0] if signed_up else start
        visits, made = visits + 1, made + len(events)


def _live_kind(rng: random.Random, customer: Customer) -> str:
    buys = customer.persona.buys
    draw = rng.random()
    if draw < buys:
        return "order"
    if draw < buys + 0.2:
        return "abandon"
    return "download" if draw < buys + 0.25 else "browse"

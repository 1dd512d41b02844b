"""Who the synthetic shop's customers are: names, addresses, birthdays, timezones and the
buying habits (persona) that drive their history. Pure: each customer comes from a
``random.Random`` seeded by the shop's seed and the customer's number alone."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from kizuna.shop import catalog

JAPANESE_SHARE = 0.8
ABROAD_SHARE = {True: 0.03, False: 0.6}  # Japanese / Western customers living outside Japan
BIRTHDAY_TODAY_SHARE = 0.02
EMAIL_CONSENT = (("granted", 0.8), ("revoked", 0.08), ("unstated", 0.12))


@dataclass(frozen=True)
class Persona:
    """How a customer buys. ``orders`` is ``steady`` (a Poisson process of ``per_year``
    orders from ``first_order`` — a share of the backfill window back — until ``stops``
    days ago), ``once``, ``new`` (a first order in the last weeks) or ``none``."""

    name: str
    weight: float
    orders: str
    per_year: tuple[float, float] = (0.0, 0.0)
    first_order: tuple[float, float] = (1.0, 1.0)
    stops: tuple[float, float] = (0.0, 0.0)
    spend: float = 1.0  # scales the basket
    visits: float = 1.0  # how often they come back in the live phase, relative
    buys: float = 0.2  # chance a live visit ends in an order


PERSONAS: tuple[Persona, ...] = (
    Persona("vip", 0.06, "steady", (12, 26), (0.55, 1.0), (0, 10), spend=1.6, visits=8, buys=0.5),
    Persona("loyal", 0.12, "steady", (6, 12), (0.4, 1.0), (0, 30), spend=1.2, visits=5, buys=0.4),
    Persona("regular", 0.15, "steady", (2.5, 5), (0.3, 1.0), (0, 75), visits=3, buys=0.3),
    Persona("lapsed", 0.15, "steady", (3, 8), (0.7, 1.0), (150, 400), visits=0.3, buys=0.2),
    Persona("one_timer", 0.25, "once", spend=0.9, visits=1, buys=0.15),
    Persona("new", 0.10, "new", visits=3, buys=0.3),
    Persona("browser", 0.17, "none", spend=0.8, visits=1.5, buys=0.05),
)
PERSONA = {persona.name: persona for persona in PERSONAS}
USER_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like"
    " Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/126.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.5 Safari/605.1.15",
)


@dataclass(frozen=True)
class Customer:
    index: int
    user_id: str
    anonymous_id: str
    first_name: str
    last_name: str
    name: str
    email: str
    birthday: date
    timezone: str
    locale: str
    email_consent: str  # granted, revoked or unstated
    persona: Persona
    affluence: float  # multiplies the basket; log-normal
    favourites: tuple[str, ...]  # categories they mostly buy
    user_agent: str

    def traits(self) -> dict[str, object]:
        traits: dict[str, object] = {
            "email": self.email,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "name": self.name,
            "birthday": self.birthday.isoformat(),
            "timezone": self.timezone,
            "locale": self.locale,
        }
        if self.email_consent != "unstated":
            traits["consent"] = {"email": self.email_consent == "granted"}
        return traits


def new_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _ascii(name: str) -> str:
    return name.lower().replace("ü", "ue").replace("ö", "oe").replace("ä", "ae")


def _birthday(rng: random.Random, today: date) -> date:
    age = rng.randint(18, 72)
    if rng.random() < BIRTHDAY_TODAY_SHARE:
        year = today.year - age
        if today.month == 2 and today.day == 29:
            while year % 4:  # a leap year near it (2000 is one; 1900 is out of range)
                year -= 1
        return today.replace(year=year)
    first = date(today.year - age - 1, 1, 1)
    return first + timedelta(days=rng.randrange(365))


def make_customer(seed: int, index: int, now: datetime) -> Customer:
    rng = random.Random(f"kizuna-shop:{seed}:customer:{index}")
    japanese = rng.random() < JAPANESE_SHARE
    if rng.random() < ABROAD_SHARE[japanese]:
        timezone, western_locale, _ = rng.choices(
            catalog.ABROAD, weights=[w for _, _, w in catalog.ABROAD]
        )[0]
    else:
        timezone, western_locale = "Asia/Tokyo", rng.choice(("en-US", "en-GB"))
    if japanese:
        (family, family_latin), (given, given_latin) = (
            rng.choice(catalog.JAPANESE_FAMILY),
            rng.choice(catalog.JAPANESE_GIVEN),
        )
        name, locale = f"{family} {given}", "ja-JP"
    else:
        given = given_latin = rng.choice(catalog.WESTERN_FIRST)
        family = family_latin = rng.choice(catalog.WESTERN_LAST)
        name, locale = f"{given} {family}", western_locale
    domain = rng.choice(catalog.EMAIL_DOMAINS)
    email = f"{_ascii(given_latin)}.{_ascii(family_latin)}.{index}@s{seed}.{domain}"
    today = now.astimezone(ZoneInfo(timezone)).date()
    persona = rng.choices(PERSONAS, weights=[p.weight for p in PERSONAS])[0]
    consent = rng.choices([c for c, _ in EMAIL_CONSENT], weights=[w for _, w in EMAIL_CONSENT])
    favourites = tuple(rng.sample(catalog.CATEGORIES, rng.choice((1, 2, 2, 3))))
    return Customer(
        index=index,
        user_id=f"sim{seed}-{index:05d}",
        anonymous_id=new_uuid(rng),
        first_name=given,
        last_name=family,
        name=name,
        email=email,
        birthday=_birthday(rng, today),
        timezone=timezone,
        locale=locale,
        email_consent=consent[0],
        persona=persona,
        affluence=rng.lognormvariate(0.0, 0.5) * persona.spend,
        favourites=favourites,
        user_agent=rng.choice(USER_AGENTS),
    )

"""What the synthetic shop sells and publishes, and the names its customers have. Pure data."""

from __future__ import annotations

import re
from dataclasses import dataclass

SHOP_URL = "https://shop.example.com"
CURRENCY = "JPY"
FREE_SHIPPING_FROM = 5_000
SHIPPING = 550


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    category: str
    brand: str
    price: int  # yen, tax included

    def properties(self) -> dict[str, object]:
        return {
            "product_id": self.product_id,
            "sku": self.product_id.upper(),
            "name": self.name,
            "category": self.category,
            "brand": self.brand,
            "price": self.price,
            "currency": CURRENCY,
            "url": f"{SHOP_URL}/products/{self.product_id}",
            "image_url": f"{SHOP_URL}/images/{self.product_id}.jpg",
        }


_PRODUCT_TABLE = """
tea        Uji Chaen       matcha-30g         1800  Uji matcha 30 g
tea        Uji Chaen       sencha-100g        1200  Shizuoka sencha 100 g
tea        Uji Chaen       hojicha-80g         980  Roasted hojicha 80 g
tea        Uji Chaen       gyokuro-50g        3200  Gyokuro 50 g
tea        Uji Chaen       genmaicha-200g      850  Genmaicha 200 g
coffee     Kissa Roasters  drip-bags-10       1100  Drip bags, 10
coffee     Kissa Roasters  beans-blend-200g   1650  House blend beans 200 g
coffee     Kissa Roasters  beans-single-200g  2400  Single origin beans 200 g
coffee     Kissa Roasters  cold-brew-pack     1350  Cold brew pack
sweets     Kyo Kashi       yokan-box          2700  Yokan gift box
sweets     Kyo Kashi       monaka-8           1900  Monaka, 8 pieces
sweets     Kyo Kashi       senbei-tin         1300  Senbei tin
sweets     Kyo Kashi       daifuku-6          2200  Strawberry daifuku, 6
tableware  Hasami Kiln     yunomi-cup         2800  Yunomi tea cup
tableware  Hasami Kiln     rice-bowl          3300  Rice bowl
tableware  Hasami Kiln     plate-set-5       11000  Plate set of 5
tableware  Hasami Kiln     kyusu-teapot       7700  Kyusu teapot
tableware  Hasami Kiln     sake-set          16500  Sake set
kitchen    Sakai Forge     santoku-knife     19800  Santoku knife 165 mm
kitchen    Sakai Forge     petty-knife        9900  Petty knife 120 mm
kitchen    Sakai Forge     donabe-pot        13200  Donabe clay pot
kitchen    Sakai Forge     chopsticks-5       2500  Chopsticks, 5 pairs
kitchen    Sakai Forge     whetstone          4400  Whetstone #1000
kitchen    Sakai Forge     iron-kettle       38500  Nambu iron kettle
textiles   Kaya Weavers    furoshiki          2900  Furoshiki wrapping cloth
textiles   Kaya Weavers    tenugui-3          2100  Tenugui towels, 3
textiles   Kaya Weavers    noren-curtain      8800  Noren curtain
textiles   Kaya Weavers    yukata            14300  Cotton yukata
"""


def _product(line: str) -> Product:
    category, brand, product_id, price, name = re.split(r"\s{2,}", line.strip())
    return Product(product_id, name, category, brand, int(price))


PRODUCTS: tuple[Product, ...] = tuple(
    _product(line) for line in _PRODUCT_TABLE.splitlines() if line.strip()
)
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(p.category for p in PRODUCTS))


@dataclass(frozen=True)
class Asset:
    asset_id: str
    title: str
    topic: str


ASSETS: tuple[Asset, ...] = (
    Asset("wp-matcha-guide", "The matcha buyer's guide", "tea"),
    Asset("wp-tea-pairing", "Pairing tea with wagashi", "tea"),
    Asset("wp-home-brewing", "Brewing coffee at home", "coffee"),
    Asset("wp-knife-care", "Caring for Japanese knives", "kitchen"),
    Asset("wp-ceramics", "A short history of Hasami ware", "tableware"),
    Asset("wp-gifting", "Japanese gifting etiquette", "gifting"),
)
SEMINARS: dict[str, str] = {
    "tea": "Online tea tasting",
    "coffee": "Pour-over workshop",
    "kitchen": "Knife sharpening class",
    "tableware": "Meet the potters of Hasami",
    "gifting": "Omiyage and ochugen: what to give",
}
PAGES: tuple[tuple[str, str], ...] = (
    ("Home", "/"),
    ("New arrivals", "/new"),
    ("Gift guide", "/gifts"),
    ("About us", "/about"),
    ("Journal", "/journal"),
)
NEWSLETTER_SOURCES = ("footer", "popup", "checkout")
REFERRERS = ("https://www.google.com/", "https://www.instagram.com/", "https://line.me/", "")

# (kanji, romaji): common family and given names.
JAPANESE_FAMILY = (
    ("佐藤", "sato"), ("鈴木", "suzuki"), ("高橋", "takahashi"), ("田中", "tanaka"),
    ("伊藤", "ito"), ("渡辺", "watanabe"), ("山本", "yamamoto"), ("中村", "nakamura"),
    ("小林", "kobayashi"), ("加藤", "kato"), ("吉田", "yoshida"), ("山田", "yamada"),
    ("佐々木", "sasaki"), ("山口", "yamaguchi"), ("松本", "matsumoto"), ("井上", "inoue"),
    ("木村", "kimura"), ("林", "hayashi"), ("清水", "shimizu"), ("森", "mori"),
)  # fmt: skip
JAPANESE_GIVEN = (
    ("陽翔", "haruto"), ("蓮", "ren"), ("湊", "minato"), ("大翔", "hiroto"), ("悠真", "yuma"),
    ("健太", "kenta"), ("翔太", "shota"), ("拓也", "takuya"), ("誠", "makoto"), ("浩二", "koji"),
    ("陽葵", "himari"), ("結衣", "yui"), ("凛", "rin"), ("さくら", "sakura"), ("美咲", "misaki"),
    ("葵", "aoi"), ("愛", "ai"), ("真由美", "mayumi"), ("恵子", "keiko"), ("花子", "hanako"),
)  # fmt: skip
WESTERN_FIRST = (
    "Emma", "Olivia", "Sophie", "Mia", "Charlotte", "Hannah", "Laura", "Grace", "Chloe", "Anna",
    "James", "Noah", "Liam", "Oliver", "Lucas", "Daniel", "Thomas", "Max", "Ethan", "Jack",
)  # fmt: skip
WESTERN_LAST = (
    "Smith", "Johnson", "Brown", "Taylor", "Miller", "Wilson", "Moore", "Clark", "Walker",
    "Wright", "Müller", "Schmidt", "Fischer", "Martin", "Bernard", "Dubois", "Kelly", "Murphy",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")

# Where the shop's customers live: (timezone, locale of a Western customer there), weighted.
ABROAD: tuple[tuple[str, str, int], ...] = (
    ("America/Los_Angeles", "en-US", 3),
    ("America/New_York", "en-US", 3),
    ("Europe/London", "en-GB", 2),
    ("Europe/Berlin", "de-DE", 2),
    ("Australia/Sydney", "en-AU", 1),
    ("Asia/Singapore", "en-SG", 1),
)

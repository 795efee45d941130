"""The simulated shop's product catalogue: content a model can read, derived from the world.

One row per item (``CATALOGUE_SCHEMA``: item_id, title, category_id, brand, price,
attributes), with the ids and prices the logs carry. The content is drawn from the
world's hidden structure (``world.py``), with noise, so a model that reads it can place
an item nobody has interacted with yet:

- ``category_id`` and the product type word: the item's category (a user's category
  affinity, the session intent, complements all act on it).
- brand: each category has its own brands (more in bigger categories) plus the first
  brand of its complement category (a phone maker also makes cases). Within a category an
  item's brand is the one whose random direction is nearest its embedding less the
  category's mean (the taste a category leaves open; Gumbel noise), so a brand marks a
  region of taste.
- colour: the nearest of 12 directions in that within-category taste (noisy), and
  six style pairs (``light``/``heavy``, ``matte``/``glossy``, ...): the sign of it along six
  orthogonal directions, each flipped with chance 0.1. Directions are shared by all
  categories, as the users' taste vectors are.
- tier (``basic`` / ``standard`` / ``premium``): price against the category's median
  (users have budgets). Consumables get a pack size that grows with the repurchase cycle
  (a 12 pack lasts longer); durables a clothing size, pure noise.
- one optional descriptor word in the title (``eco``, ``smart``, ...): pure noise.

Title example: ``Velmora eco premium light matte headphones blue size M`` (the first two
style words). Attributes are ``key:value`` tokens: ``["type:headphones", "colour:blue",
"size:M", "tier:premium", "style:light", "style:matte", "style:modern", ...]``.

Everything is a deterministic function of ``SimConfig`` through its own random stream
(``CONTENT_KEY``), so adding content changes no event the simulator writes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqrec_ray import schema as S
from seqrec_ray.data.catalogue import CATALOGUE_SCHEMA
from seqrec_ray.sim.world import Catalogue, World, child_rng

CONTENT_KEY = 4  # spawn-key root of the content stream (world.py uses 0-2, env.py 3)

COLOURS = ("black", "white", "grey", "red", "blue", "green", "yellow", "orange", "pink", "purple", "brown", "silver")
SIZES = ("S", "M", "L", "XL")
PACKS = (1, 2, 4, 6, 12)  # by repurchase cycle, shortest first
TIERS = ("basic", "standard", "premium")
DESCRIPTORS = ("classic", "eco", "smart", "ultra", "mini", "plus", "original", "deluxe")
DESCRIPTOR_PROB = 0.4
# Each pair reads the sign of the item's taste along one of orthogonal directions.
STYLES = (("light", "heavy"), ("matte", "glossy"), ("modern", "vintage"), ("slim", "chunky"), ("soft", "firm"),
          ("bold", "plain"))
STYLE_FLIP = 0.1  # chance a style word says the opposite
TITLE_STYLES = 2  # style words a title repeats (all are attributes)
TIER_LOG_RATIO = 0.15  # |log(price / category median)| beyond this is basic or premium
BRAND_NOISE = 0.1  # Gumbel scale on (unit residual . unit brand direction), whose spread is ~0.25
COLOUR_NOISE = 0.1
_SYLLABLES = (
    ("Nor", "Vel", "Ka", "Lu", "Zen", "Bra", "Tor", "Mi", "Sol", "Dra", "Fen", "Oro", "Pax", "Qui", "Ri", "Sta"),
    ("di", "mo", "ra", "vi", "le", "ko", "sa", "ne", "tu", "ba", "lo", "phi", "ga", "ze", "ri", "xa"),
    ("ca", "ra", "n", "x", "to", "lia", "ro", "s", "va", "na", "do", "ck", "on", "ia", "us", "ex"),
)


def catalogue_table(world: World) -> pa.Table:
    """Every item of ``world`` as a ``CATALOGUE_SCHEMA`` row, in item index order."""
    cat = world.catalogue
    w = _words(child_rng(world.cfg.seed, CONTENT_KEY), cat)
    styles = w["style"][:, :TITLE_STYLES].T
    words = [w["brand"], w["descriptor"], w["tier_title"], *styles, w["type"], w["colour"], w["size_title"]]
    title = pc.binary_join_element_wise(*(pa.array(x, pa.string()) for x in words), " ", null_handling="skip")
    values = np.stack(["type:" + w["type"], "colour:" + w["colour"], w["size_attr"], "tier:" + w["tier"],
                       *("style:" + w["style"].T)], axis=1)  # (n, 4 + len(STYLES))
    offsets = np.arange(0, values.size + 1, values.shape[1], dtype=np.int32)
    return pa.table({
        S.ITEM_ID: pa.array(cat.item_ids, pa.string()),
        "title": title,
        S.CATEGORY_ID: pa.array(cat.category_ids, pa.string()).take(pa.array(cat.category)),
        "brand": pa.array(w["brand"], pa.string()),
        S.PRICE: pa.array(cat.price, pa.float64()),
        "attributes": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.reshape(-1), pa.string())),
    }, schema=CATALOGUE_SCHEMA)


def _words(rng: np.random.Generator, cat: Catalogue) -> dict[str, np.ndarray]:
    """Per item (object arrays of str, None = no word): the words of its title and attributes."""
    n = cat.n_items
    residual = _within_category(cat)
    brand_names, brand = _brands(rng, cat, residual)
    colour = _nearest_direction(rng, residual, len(COLOURS), COLOUR_NOISE)
    tier = _tiers(cat)
    consumable = cat.cycle_days > 0
    pack = np.digitize(cat.cycle_days, np.linspace(7.0, 45.0, len(PACKS) + 1)[1:-1])
    size = np.where(consumable, _str(PACKS)[pack], _str(SIZES)[rng.integers(len(SIZES), size=n)])
    descriptor = _str(DESCRIPTORS)[rng.integers(len(DESCRIPTORS), size=n)]
    tier_word = _str(TIERS)[tier]
    style = _styles(rng, residual)
    return {
        "brand": _str(brand_names)[brand],
        "descriptor": np.where(rng.random(n) < DESCRIPTOR_PROB, descriptor, None),
        "tier": tier_word,
        "tier_title": np.where(tier == 1, None, tier_word),  # "standard" goes unsaid in a title
        "style": style,
        "type": _str(cat.cat_names)[cat.category],
        "colour": _str(COLOURS)[colour],
        "size_title": np.where(consumable, size + " pack", "size " + size),
        "size_attr": np.where(consumable, "pack:" + size, "size:" + size),
    }


def _str(words) -> np.ndarray:
    return np.array([str(w) for w in words], dtype=object)


def _styles(rng: np.random.Generator, residual: np.ndarray) -> np.ndarray:
    """(n, len(STYLES)) words: per pair, the sign of ``residual`` along its own direction."""
    n, d = residual.shape
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0][:, : len(STYLES)]  # (d, P) orthonormal
    second = (residual @ basis > 0) ^ (rng.random((n, len(STYLES))) < STYLE_FLIP)  # (n, P)
    words = np.array([[a, b] for a, b in STYLES], dtype=object)  # (P, 2)
    return words[np.arange(len(STYLES)), second.astype(np.int64)]


def _within_category(cat: Catalogue) -> np.ndarray:
    """(n, d) unit rows: each embedding less its category's mean, the taste a category leaves open."""
    sizes = np.diff(cat.cat_start)
    mean = np.add.reduceat(cat.emb.astype(np.float64), cat.cat_start[:-1], axis=0) / sizes[:, None]
    residual = cat.emb - mean[cat.category]
    return residual / np.maximum(np.linalg.norm(residual, axis=1, keepdims=True), 1e-12)


def _brands(rng: np.random.Generator, cat: Catalogue, residual: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(brand names, brand index per item): own brands per category plus the complement's
    first; within a category the brand nearest the item's ``residual`` taste, noisily."""
    sizes = np.diff(cat.cat_start)
    own = np.clip(np.round(np.sqrt(sizes / 4.0)), 2, 16).astype(np.int64)  # (n_cat,)
    first = np.concatenate([[0], np.cumsum(own)])
    directions = rng.standard_normal((first[-1], cat.emb.shape[1]))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    brand = np.empty(cat.n_items, dtype=np.int64)
    for c, (lo, hi) in enumerate(zip(cat.cat_start[:-1], cat.cat_start[1:])):
        candidates = np.append(np.arange(first[c], first[c + 1]), first[cat.complement_category[c]])
        score = residual[lo:hi] @ directions[candidates].T + BRAND_NOISE * rng.gumbel(size=(hi - lo, len(candidates)))
        brand[lo:hi] = candidates[np.argmax(score, axis=1)]
    return _brand_names(rng, int(first[-1])), brand


def _brand_names(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct made-up names of three syllables (a number suffix past 4096)."""
    k = [len(s) for s in _SYLLABLES]
    capacity = int(np.prod(k))
    codes = rng.permutation(capacity)[: min(count, capacity)]
    names = [_SYLLABLES[0][c // (k[1] * k[2])] + _SYLLABLES[1][c // k[2] % k[1]] + _SYLLABLES[2][c % k[2]] for c in codes]
    return names + [f"{names[i % capacity]} {i // capacity + 1}" for i in range(len(names), count)]


def _nearest_direction(rng: np.random.Generator, emb: np.ndarray, k: int, noise: float) -> np.ndarray:
    """Per row of ``emb``, the nearest of ``k`` random unit directions, with Gumbel noise."""
    directions = rng.standard_normal((k, emb.shape[1]))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return np.argmax(emb @ directions.T + noise * rng.gumbel(size=(len(emb), k)), axis=1)


def _tiers(cat: Catalogue) -> np.ndarray:
    """0 basic, 1 standard, 2 premium: the price against its category's median."""
    median = np.array([np.median(cat.price[lo:hi]) for lo, hi in zip(cat.cat_start[:-1], cat.cat_start[1:])])
    ratio = np.log(cat.price / median[cat.category])
    return 1 + (ratio > TIER_LOG_RATIO).astype(np.int64) - (ratio < -TIER_LOG_RATIO).astype(np.int64)

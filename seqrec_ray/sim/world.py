"""The shopper world: a catalogue, a user population and the true utility of an item.

Everything here is a deterministic function of ``SimConfig`` (one master seed): the
catalogue from one child seed, the users in fixed-size blocks each from its own child
seed, so user ``u123`` has the same preferences whether 1,000 or 1,000,000 users are
simulated and whichever process simulates them. The organic log generator
(``organic.py``) and the gymnasium env (``env.py``) share this world and the funnel in
``behaviour.py``; ground truth written beside the logs comes from here too.

Utility of item i for user u at time t, in context (``utility``):

    taste   <u0 + drift * (t - start) / 30 days, e_i>      long-term taste, drifting
  + w_aff  * log p_u(category_i)                           category affinity (a profile sees it)
  + w_pop  * log popularity_i                              popular items are better on average
  - w_price * max(0, log(price_i / budget_u))              too expensive for this user
  + w_intent   [category_i == session intent]              what this session is about
  + w_sub * cos(e_i, e_last_click) [same category]         substitutes while browsing
  + w_comp     [i in complements(last purchase)]           a phone, then a case
  + w_due      [i is a consumable due for repurchase]      repeat purchases
  + w_bought   [i is a durable bought recently]            nobody buys the same phone twice

The last five terms depend on the session so far: only a sequence can reveal them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from seqrec_ray.schema import SECONDS_PER_DAY

DRIFT_PERIOD_S = 30 * SECONDS_PER_DAY

# Category names double as search queries; beyond this list names get a number suffix.
_CATEGORY_WORDS = (
    "phone", "case", "charger", "laptop", "mouse", "keyboard", "headphones", "speaker",
    "camera", "tripod", "shampoo", "conditioner", "soap", "toothpaste", "razor", "lotion",
    "coffee", "tea", "snacks", "cereal", "diapers", "wipes", "dog food", "cat litter",
    "sneakers", "socks", "jacket", "jeans", "shirt", "dress", "watch", "strap",
    "book", "notebook", "pen", "lamp", "bulb", "pillow", "blanket", "mug",
)


@dataclass(frozen=True)
class SimConfig:
    """The world: catalogue size and shape, population parameters, behaviour weights."""

    seed: int = field(default=0, metadata={"help": "master seed of the world and the behaviour"})
    n_items: int = field(default=2_000, metadata={"help": "catalogue size"})
    n_categories: int = field(default=40, metadata={"help": "number of categories"})
    dim: int = 16
    user_block: int = field(default=1_024, metadata={"help": "users per parameter/simulation block; part of the seed contract"})
    start_time: float = field(default=1_700_000_000.0, metadata={"help": "the organic logs' day 0, epoch seconds (2023-11-14 UTC)"})
    zipf_exponent: float = 1.0
    consumable_fraction: float = 0.3
    n_substitutes: int = 8
    n_complements: int = 5
    affinity_concentration: float = field(default=0.3, metadata={"help": "Dirichlet alpha per category: low = focused users"})
    drift_scale: float = field(default=0.3, metadata={"help": "taste drift per 30 days (std per dimension)"})
    sessions_per_day: float = field(default=0.25, metadata={"help": "mean over users; individual rates are log-normal"})
    w_aff: float = 0.5
    w_pop: float = 0.25
    w_price: float = 1.5
    w_intent: float = 2.5
    w_sub: float = 1.0
    w_comp: float = 2.5
    w_due: float = 3.0
    w_bought: float = -3.0
    complement_window_s: float = 2 * SECONDS_PER_DAY
    position_bias: float = field(default=0.8, metadata={"help": "examination probability (1 + position) ** -position_bias"})
    outside_utility: float = field(default=1.0, metadata={"help": "utility of clicking nothing on a slate"})
    fatigue: float = field(default=0.15, metadata={"help": "per step: the outside option and leaving grow more attractive"})
    cart_bias: float = -1.5
    cart_weight: float = 0.7
    fav_bias: float = -3.5
    buy_bias: float = 0.0
    buy_weight: float = 0.5
    leave_bias: float = -2.0
    leave_after_purchase: float = 1.0

    def __post_init__(self) -> None:
        for name in ("n_items", "n_categories", "dim", "user_block", "n_substitutes", "n_complements"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SimConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.n_categories < 2:
            raise ValueError(f"SimConfig.n_categories must be >= 2 (complements need another category), got {self.n_categories}")
        if self.n_items < 3 * self.n_categories:
            raise ValueError(f"SimConfig.n_items={self.n_items} must be >= 3 * n_categories={3 * self.n_categories}")
        if not 0.0 <= self.consumable_fraction <= 1.0:
            raise ValueError(f"SimConfig.consumable_fraction must be in [0, 1], got {self.consumable_fraction}")
        for name in ("zipf_exponent", "affinity_concentration", "sessions_per_day", "position_bias"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SimConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"SimConfig.{f.name} must be finite, got {value!r}")
        if self.seed < 0:
            raise ValueError(f"SimConfig.seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict:
        return asdict(self)


def child_rng(seed: int, *key: int) -> np.random.Generator:
    """An independent stream per purpose and block: SeedSequence spawn keys, not seed + i."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


# Spawn-key roots of the independent random streams (the env uses 3 for live sessions).
CATALOGUE_KEY, USERS_KEY, ORGANIC_KEY = 0, 1, 2


@dataclass(frozen=True)
class Catalogue:
    """Items sorted by category: category c owns indices ``[start[c], start[c + 1])``."""

    category: np.ndarray  # (n,) int64
    price: np.ndarray  # (n,) float64
    log_pop: np.ndarray  # (n,) float64, log popularity, max 0
    emb: np.ndarray  # (n, d) float32, unit rows
    cycle_days: np.ndarray  # (n,) float64, repurchase cycle; 0 = durable
    substitutes: np.ndarray  # (n, S) int64, most similar items of the same category
    complements: np.ndarray  # (n, C) int64, items of the complement category
    cat_start: np.ndarray  # (n_categories + 1,) int64
    cat_names: tuple[str, ...]
    complement_category: np.ndarray  # (n_categories,) int64
    cat_pop: np.ndarray  # (n_categories,) float64, share of popularity per category
    pop_cdf: np.ndarray  # (n,) float64, cumulative popularity within each category, ends at 1

    @property
    def n_items(self) -> int:
        return len(self.category)

    @property
    def item_ids(self) -> list[str]:
        return [f"i{i}" for i in range(self.n_items)]

    @property
    def category_ids(self) -> list[str]:
        return [f"c{c}" for c in range(len(self.cat_names))]

    def top_item(self, category: np.ndarray) -> np.ndarray:
        """The most popular item of each category (a search's top hit): its first item,
        since items within a category are stored by descending popularity."""
        return self.cat_start[:-1][category]


def build_catalogue(cfg: SimConfig) -> Catalogue:
    rng = child_rng(cfg.seed, CATALOGUE_KEY)
    n, n_cat, d = cfg.n_items, cfg.n_categories, cfg.dim
    # Category sizes: Zipf-like shares, at least 3 items each.
    share = rng.permutation(1.0 / np.arange(1, n_cat + 1) ** 0.7)
    sizes = 3 + np.floor(share / share.sum() * (n - 3 * n_cat)).astype(np.int64)
    sizes[np.argmax(sizes)] += n - sizes.sum()
    category = np.repeat(np.arange(n_cat), sizes)
    cat_start = np.concatenate([[0], np.cumsum(sizes)])

    # Popularity: a global Zipf over a random ranking, then each category's items sorted
    # by descending popularity so a category's first item is its best seller.
    log_pop = -cfg.zipf_exponent * np.log(1.0 + rng.permutation(n))
    order = np.lexsort((-log_pop, category))
    log_pop = log_pop[order]
    pop = np.exp(log_pop)
    cat_pop = np.bincount(category, weights=pop, minlength=n_cat)
    pop_cdf = np.cumsum(pop) - np.repeat(np.concatenate([[0.0], np.cumsum(cat_pop)[:-1]]), sizes)
    pop_cdf /= np.repeat(cat_pop, sizes)
    cat_pop = cat_pop / cat_pop.sum()

    centres = rng.standard_normal((n_cat, d))
    emb = centres[category] + 0.6 * rng.standard_normal((n, d))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)

    base_price = np.exp(rng.normal(3.0, 1.0, n_cat))  # median category price about 20
    price = np.round(base_price[category] * np.exp(rng.normal(0.0, 0.3, n)), 2) + 0.99
    consumable = rng.random(n_cat) < cfg.consumable_fraction
    cycle_days = np.where(consumable[category], rng.uniform(7.0, 45.0, n), 0.0)

    complement_category = (np.arange(n_cat) + rng.integers(1, n_cat, n_cat)) % n_cat
    substitutes = _substitutes(emb, cat_start, cfg.n_substitutes)
    complements = _complements(rng, complement_category[category], cat_start, pop_cdf, cfg.n_complements)
    names = tuple(
        _CATEGORY_WORDS[c % len(_CATEGORY_WORDS)] + ("" if c < len(_CATEGORY_WORDS) else f" {c // len(_CATEGORY_WORDS) + 1}")
        for c in range(n_cat)
    )
    return Catalogue(category, price, log_pop, emb, cycle_days, substitutes, complements,
                     cat_start, names, complement_category, cat_pop, pop_cdf)


def _substitutes(emb: np.ndarray, cat_start: np.ndarray, k: int) -> np.ndarray:
    """Per item, the k most similar other items of its category (cycled when it is small)."""
    out = np.empty((len(emb), k), dtype=np.int64)
    for lo, hi in zip(cat_start[:-1], cat_start[1:]):
        sim = emb[lo:hi] @ emb[lo:hi].T  # (m, m)
        np.fill_diagonal(sim, -np.inf)
        ranked = np.argsort(-sim, axis=1, kind="stable")[:, : hi - lo - 1]  # (m, m - 1), self excluded
        out[lo:hi] = lo + ranked[:, np.arange(k) % ranked.shape[1]]
    return out


def _complements(rng, target_cat: np.ndarray, cat_start: np.ndarray, pop_cdf: np.ndarray, k: int) -> np.ndarray:
    """Per item, k items of its complement category drawn by popularity (fixed, seeded)."""
    return sample_in_category(rng.random((len(target_cat), k)), np.repeat(target_cat[:, None], k, 1), cat_start, pop_cdf)


def sample_in_category(u: np.ndarray, cat: np.ndarray, cat_start: np.ndarray, pop_cdf: np.ndarray) -> np.ndarray:
    """Items drawn by popularity within each entry's category, from uniforms ``u`` (same shape)."""
    # Offset each category's cdf by its index so one global searchsorted serves all categories.
    keys = pop_cdf + np.repeat(np.arange(len(cat_start) - 1), np.diff(cat_start))
    idx = np.searchsorted(keys, cat + np.minimum(u, 1.0 - 1e-12), side="right")
    return np.clip(idx, cat_start[cat], cat_start[cat + 1] - 1)


@dataclass(frozen=True)
class Users:
    """Preference parameters of a contiguous range of users (rows = user index - first)."""

    first: int
    taste: np.ndarray  # (B, d) float32
    drift: np.ndarray  # (B, d) float32, taste change per 30 days
    log_affinity: np.ndarray  # (B, n_categories) float64, log of category preference
    affinity_cdf: np.ndarray  # (B, n_categories) float64
    session_rate: np.ndarray  # (B,) sessions per day
    budget: np.ndarray  # (B,) typical price the user is happy to pay
    search_prob: np.ndarray  # (B,) chance a session starts with a search

    def __len__(self) -> int:
        return len(self.session_rate)


def user_block(cfg: SimConfig, catalogue: Catalogue, block: int) -> Users:
    """Users ``[block * user_block, (block + 1) * user_block)``, from the block's own seed."""
    rng = child_rng(cfg.seed, USERS_KEY, block)
    b, d = cfg.user_block, cfg.dim
    taste = rng.standard_normal((b, d)).astype(np.float32)
    drift = (cfg.drift_scale * rng.standard_normal((b, d))).astype(np.float32)
    # Personal category shares mixed with the market's, so popular categories stay popular.
    personal = rng.dirichlet(np.full(cfg.n_categories, cfg.affinity_concentration), size=b)
    affinity = 0.8 * personal + 0.2 * catalogue.cat_pop[None, :]
    rate = cfg.sessions_per_day * np.exp(rng.normal(-0.18, 0.6, b))  # mean about sessions_per_day
    budget = np.exp(rng.normal(np.log(40.0), 0.8, b))
    search_prob = rng.beta(2.0, 5.0, b)
    return Users(block * b, taste, drift, np.log(affinity), np.cumsum(affinity, axis=1),
                 rate, budget, search_prob)


class World:
    """The catalogue plus lazily generated user blocks (cached)."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.catalogue = build_catalogue(cfg)
        self._blocks: dict[int, Users] = {}

    def block(self, block: int) -> Users:
        if block not in self._blocks:
            self._blocks[block] = user_block(self.cfg, self.catalogue, block)
        return self._blocks[block]

    def users(self, indices: np.ndarray) -> Users:
        """Parameters of arbitrary users by index (any order, repeats allowed)."""
        indices = np.asarray(indices, dtype=np.int64)
        ub = self.cfg.user_block
        blocks = np.unique(indices // ub)
        parts = [self.block(int(b)) for b in blocks]
        pos = np.searchsorted(blocks, indices // ub) * ub + indices % ub
        columns = (np.concatenate([getattr(p, f.name) for p in parts])[pos] for f in fields(Users) if f.name != "first")
        return Users(-1, *columns)

    @staticmethod
    def user_id(index: int) -> str:
        return f"u{index}"

    @staticmethod
    def user_index(user_id: str) -> int:
        if not (user_id.startswith("u") and user_id[1:].isdigit()):
            raise ValueError(f"not a simulator user id: {user_id!r} (expected 'u<index>')")
        return int(user_id[1:])

    def item_index(self, item_id: str) -> int:
        if not (item_id.startswith("i") and item_id[1:].isdigit() and int(item_id[1:]) < self.catalogue.n_items):
            raise ValueError(f"not a simulator item id: {item_id!r} (expected 'i<index>' below {self.catalogue.n_items})")
        return int(item_id[1:])


@dataclass
class Context:
    """Per-session state that shapes utility, one row per session in a batch (-1 = none)."""

    intent: np.ndarray  # (B,) category
    last_click: np.ndarray  # (B,) item
    last_purchase: np.ndarray  # (B,) item
    last_purchase_time: np.ndarray  # (B,) seconds
    due_item: np.ndarray  # (B,) consumable due for repurchase
    bought: np.ndarray  # (B, R) recently purchased items, -1 = empty slot


def utility(cfg: SimConfig, cat: Catalogue, users: Users, rows: np.ndarray, items: np.ndarray,
            t: np.ndarray, ctx: Context) -> np.ndarray:
    """True utility of ``items`` (B, k) for users ``users[rows]`` (B,) at times ``t`` (B,)."""
    periods = ((t - cfg.start_time) / DRIFT_PERIOD_S).astype(np.float32)[:, None]
    taste_now = users.taste[rows] + periods * users.drift[rows]  # (B, d)
    icat = cat.category[items]  # (B, k)
    u = np.einsum("bd,bkd->bk", taste_now, cat.emb[items])  # (B, k)
    u = u + cfg.w_aff * np.take_along_axis(users.log_affinity[rows], icat, axis=1) + cfg.w_pop * cat.log_pop[items]
    u = u - cfg.w_price * np.maximum(0.0, np.log(cat.price[items] / users.budget[rows][:, None]))
    u = u + cfg.w_intent * (icat == ctx.intent[:, None])
    last = np.maximum(ctx.last_click, 0)
    same = (icat == cat.category[last][:, None]) & (ctx.last_click[:, None] >= 0)
    u = u + cfg.w_sub * same * np.einsum("bd,bkd->bk", cat.emb[last], cat.emb[items])
    recent = (ctx.last_purchase >= 0) & (t - ctx.last_purchase_time < cfg.complement_window_s)
    comp = (cat.complements[np.maximum(ctx.last_purchase, 0)][:, None, :] == items[:, :, None]).any(-1)
    u = u + cfg.w_comp * (comp & recent[:, None])
    u = u + cfg.w_due * ((items == ctx.due_item[:, None]) & (ctx.due_item[:, None] >= 0))
    bought = (ctx.bought[:, None, :] == items[:, :, None]).any(-1) & (cat.cycle_days[items] == 0)
    return u + cfg.w_bought * bought

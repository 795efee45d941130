"""Organic logs: many shoppers at once, no recommender in the loop (vectorised numpy).

A block of ``SimConfig.user_block`` users is simulated together. Each user gets a
schedule of sessions over ``days`` (Poisson count, at least ``MIN_SESSION_GAP_S`` apart);
all users then advance one step per loop iteration, each in their own session, so the
loop runs (longest user's total steps) times, not once per event. The slate each step is
the shop's own listing: popular items of the session's intent, a "similar items" widget
(substitutes of the last click), a "bought together" widget (complements of the last
purchase), a few best sellers, and the due consumable first in a repurchase session.

Rows depend only on (SimConfig, days, block): the block's random stream is a SeedSequence
child of the master seed, so shards and workers never change what a user did.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqrec_ray import schema as S
from seqrec_ray.sim import behaviour as B
from seqrec_ray.sim.state import SESSION_START_UNIFORMS, ShopperState, after_step, context, new_state, start_sessions
from seqrec_ray.sim.world import ORGANIC_KEY, SECONDS_PER_DAY, Catalogue, World, child_rng, sample_in_category, utility

MIN_SESSION_GAP_S = 3 * 3600.0
ORGANIC_SLATE = 4  # items on the listing a browsing shopper scans per step
MAX_SESSION_STEPS = 30
# Where each listing slot comes from (when available), by cumulative probability.
_P_SUBSTITUTE, _P_COMPLEMENT, _P_BESTSELLER = 0.25, 0.45, 0.92


@dataclass(frozen=True)
class OrganicConfig:
    """How much organic behaviour to simulate: ``users`` users (indices 0..users-1) over ``days``."""

    users: int = field(metadata={"help": "number of shoppers (u0 .. u<N-1>)"})
    days: float = field(metadata={"help": "days of behaviour to simulate"})
    max_session_steps: int = field(default=MAX_SESSION_STEPS, metadata={"help": "steps per organic session at most"})

    def __post_init__(self) -> None:
        if int(self.users) < 1:
            raise ValueError(f"OrganicConfig.users must be >= 1, got {self.users!r}")
        if not 0 < self.days <= 3650:
            raise ValueError(f"OrganicConfig.days must be in (0, 3650], got {self.days!r}")
        if int(self.max_session_steps) < 1:
            raise ValueError(f"OrganicConfig.max_session_steps must be >= 1, got {self.max_session_steps!r}")

    def blocks(self, user_block: int) -> int:
        return -(-self.users // user_block)


def session_schedule(rng: np.random.Generator, rate: np.ndarray, days: float, t0: float) -> tuple[np.ndarray, np.ndarray]:
    """Session start times for each user, sorted per user: (starts flat, offsets (B + 1,))."""
    span = days * SECONDS_PER_DAY
    n = np.minimum(rng.poisson(rate * days), int(span // MIN_SESSION_GAP_S))  # (B,)
    owner = np.repeat(np.arange(len(rate)), n)
    # Sorted uniforms on a shortened span plus ordinal * gap keep sessions MIN_SESSION_GAP_S apart.
    free = (span - n * MIN_SESSION_GAP_S)[owner]
    raw = rng.random(len(owner)) * free
    order = np.lexsort((raw, owner))
    offsets = np.concatenate([[0], np.cumsum(n)])
    ordinal = np.arange(len(owner)) - offsets[owner]
    return t0 + raw[order] + ordinal * MIN_SESSION_GAP_S, offsets


def listing(cat: Catalogue, state, rows: np.ndarray, t: np.ndarray, u: np.ndarray, window_s: float) -> np.ndarray:
    """The shop's own slate (R, ORGANIC_SLATE) for ``rows``; u: (R, 3 * ORGANIC_SLATE) uniforms."""
    k = ORGANIC_SLATE
    src, pick, which = u[:, :k], u[:, k : 2 * k], u[:, 2 * k :]
    intent = np.repeat(state.intent[rows][:, None], k, axis=1)
    slate = sample_in_category(pick, intent, cat.cat_start, cat.pop_cdf)
    last_click, last_buy = state.last_click[rows][:, None], state.last_purchase[rows][:, None]
    subs = cat.substitutes[np.maximum(last_click, 0), (which * cat.substitutes.shape[1]).astype(np.int64)]
    comps = cat.complements[np.maximum(last_buy, 0), (which * cat.complements.shape[1]).astype(np.int64)]
    recent = (last_buy >= 0) & ((t - state.last_purchase_time[rows]) < window_s)[:, None]
    best = sample_in_category(pick, np.zeros_like(intent), np.array([0, cat.n_items]), _global_cdf(cat))
    slate = np.where((last_click >= 0) & (src < _P_SUBSTITUTE), subs, slate)
    slate = np.where(recent & (src >= _P_SUBSTITUTE) & (src < _P_COMPLEMENT), comps, slate)
    slate = np.where(src >= _P_BESTSELLER, best, slate)
    first = state.repurchase[rows] & (state.step[rows] == 0)
    slate[first, 0] = state.due_item[rows][first]
    return slate


def _global_cdf(cat: Catalogue) -> np.ndarray:
    pop = np.exp(cat.log_pop)
    return np.cumsum(pop) / pop.sum()


class _EventBuffer:
    """Column chunks appended per step, concatenated once at the end."""

    def __init__(self) -> None:
        self.cols: dict[str, list[np.ndarray]] = {k: [] for k in ("row", "item", "type", "time", "session", "query")}

    def add(self, row, item, etype, time, session, query) -> None:
        for key, value in zip(self.cols, (row, item, etype, time, session, query)):
            self.cols[key].append(np.asarray(value))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) if v else np.zeros(0) for k, v in self.cols.items()}


def simulate_block(world: World, ocfg: OrganicConfig, block: int) -> pa.Table:
    """EVENT_SCHEMA rows of the block's users below ``ocfg.users``, sorted by user then time."""
    events, _ = run_block(world, ocfg, block)
    return events_table(world, events, block * world.cfg.user_block, ocfg.users)


def run_block(world: World, ocfg: OrganicConfig, block: int) -> tuple[dict[str, np.ndarray], ShopperState]:
    """Simulate the whole block: (event index columns, final state of every user in it)."""
    cfg, cat = world.cfg, world.catalogue
    users = world.block(block)
    rng = child_rng(cfg.seed, ORGANIC_KEY, block)
    starts, offsets = session_schedule(rng, users.session_rate, ocfg.days, cfg.start_time)
    n_sessions = np.diff(offsets)
    state = new_state(users, cfg.start_time)
    buf = _EventBuffer()
    n_s = SESSION_START_UNIFORMS
    n_u = B.uniforms_per_step(ORGANIC_SLATE) + 3 * ORGANIC_SLATE + n_s
    active = np.flatnonzero(n_sessions > 0)
    while len(active):
        u = rng.random((len(active), n_u))
        fresh = state.step[active] == 0
        _start(cfg, cat, users, state, active[fresh], starts[offsets[active[fresh]] + state.sessions[active[fresh]]],
               u[fresh, -n_s:], buf)
        t = state.t[active]
        slate = listing(cat, state, active, t, u[:, -n_s - 3 * ORGANIC_SLATE : -n_s], cfg.complement_window_s)
        util = utility(cfg, cat, users, active, slate, t, context(state, active))
        affordable = cat.price[slate] <= state.budget_left[active][:, None]
        out = B.respond(cfg, u[:, : B.uniforms_per_step(ORGANIC_SLATE)], slate, util, B.first_occurrence(slate),
                        affordable, state.step[active], t)
        r, c = np.nonzero(out.emitted)
        buf.add(active[r], out.items[r, c], out.types[r, c], out.times[r, c], state.sessions[active[r]] - 1,
                np.full(len(r), -1))
        ended = after_step(cat, state, active, slate, out, ocfg.max_session_steps)
        state.step[active[ended]] = 0
        active = active[~ended | (state.sessions[active] < n_sessions[active])]
    return buf.arrays(), state


def _start(cfg, cat, users, state, rows, t_start, u, buf: _EventBuffer) -> None:
    """Start sessions; a search is logged with its top hit as the item (the schema needs one)."""
    if not len(rows):
        return
    searched = start_sessions(cfg, cat, users, state, rows, t_start, u)
    s = rows[searched]
    intent = state.intent[s]
    buf.add(s, cat.top_item(intent), np.full(len(s), B.SEARCH, dtype=np.int8), t_start[searched],
            state.sessions[s] - 1, intent)


def events_table(world: World, ev: dict[str, np.ndarray], first_user: int, max_users: int) -> pa.Table:
    """Buffered index columns -> EVENT_SCHEMA table (strings via dictionary take, no Python loop per row)."""
    cat = world.catalogue
    user = ev["row"].astype(np.int64) + first_user
    keep = user < max_users
    order = np.lexsort((ev["time"][keep], user[keep]))
    pick = {k: v[keep][order] for k, v in ev.items()}
    user = user[keep][order]
    item = pick["item"].astype(np.int64)
    rows = np.arange(first_user, first_user + world.cfg.user_block)
    user_ids = pa.array([f"u{i}" for i in rows]).take(pa.array(user - first_user))
    session = pc.binary_join_element_wise(user_ids, pc.cast(pa.array(pick["session"].astype(np.int64)), pa.string()), "-")
    query_cat = pick["query"].astype(np.int64)
    query = pa.array(list(cat.cat_names)).take(pa.array(np.maximum(query_cat, 0), mask=query_cat < 0))
    return pa.table({
        S.USER_ID: user_ids,
        S.ITEM_ID: pa.array(cat.item_ids).take(pa.array(item)),
        S.EVENT_TYPE: pa.array(list(S.EVENT_TYPES)).take(pa.array(pick["type"].astype(np.int64) - 1)),
        S.TIMESTAMP: pa.array(pick["time"].astype(np.float64)),
        S.SESSION_ID: session,
        S.CATEGORY_ID: pa.array(cat.category_ids).take(pa.array(cat.category[item])),
        S.PRICE: pa.array(cat.price[item]),
        S.QUERY: query,
    }, schema=S.EVENT_SCHEMA)

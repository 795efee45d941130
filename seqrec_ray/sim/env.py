"""``ShopperEnv``: a gymnasium env where an agent shows slates to simulated shoppers.

An episode is one shopping session of one user from a fixed population (users
``u0 .. u{n_users-1}`` of the world, the same ids and preferences as in the organic
logs). Each step the agent shows ``slate_size`` item indices; the shopper responds
through the funnel of ``behaviour.py`` (view, click, fav, cart, purchase, or leave).

Randomness, for A/B tests with common random numbers: ``reset(seed=s)`` restarts the
whole population (fresh state) and fixes the base seed; every session then draws from
its own stream ``SeedSequence(s, spawn_key=(3, user, session_ordinal))``, a fixed number
of uniforms per step. Two arms that reset with the same seed and visit the same users
get the same random numbers for each user's n-th session whatever the policy and visit
order; ``reset()`` without a seed continues (users keep budgets, purchases, clocks).

Observation (fixed size, H = ``history_len``, left-padded with 0, newest last):
``items`` (item index + 1), ``event_types`` (schema index 1..6), ``categories``
(category index + 1), ``gap_buckets`` (contracts §2), ``query`` (category index + 1 of
this session's search, 0 = none), ``step``. Raw ids come in ``info["events"]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from seqrec_ray.schema import (
    EVENT_TYPE_INDEX,
    EVENT_TYPES,
    FIRST_EVENT_BUCKET,
    NUM_EVENT_TYPE_INDICES,
    NUM_GAP_BUCKETS,
    SECONDS_PER_DAY,
    SEQUENCE_FEATURES,
    gap_bucket_of,
)
from seqrec_ray.sim import ENV_ID  # noqa: F401  (re-exported)
from seqrec_ray.sim import behaviour as B
from seqrec_ray.sim.organic import MIN_SESSION_GAP_S, OrganicConfig, events_table, run_block
from seqrec_ray.sim.state import SESSION_START_UNIFORMS, ShopperState, after_step, context, new_state, start_sessions
from seqrec_ray.sim.world import SimConfig, World, child_rng, utility

REWARDS = ("purchases", "revenue")
GAP_BUCKETS = NUM_GAP_BUCKETS
_LIVE_KEY = 3


@dataclass(frozen=True)
class EnvConfig:
    sim: SimConfig = field(default_factory=SimConfig)
    n_users: int = 1_000  # population: users 0 .. n_users - 1
    slate_size: int = 10
    history_len: int = 50
    max_steps: int = 20  # steps per session before truncation
    reward: str = "purchases"  # or "revenue" (sum of prices bought)
    warm_start_days: float = 0.0  # > 0: a user's live sessions follow this many days of organic history

    def __post_init__(self) -> None:
        if not isinstance(self.sim, SimConfig):
            raise TypeError(f"EnvConfig.sim must be a SimConfig, got {type(self.sim).__name__}")
        for name in ("n_users", "slate_size", "history_len", "max_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"EnvConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.slate_size > self.sim.n_items:
            raise ValueError(f"EnvConfig.slate_size={self.slate_size} exceeds the catalogue ({self.sim.n_items} items)")
        if self.reward not in REWARDS:
            raise ValueError(f"EnvConfig.reward must be one of {REWARDS}, got {self.reward!r}")
        if not 0.0 <= self.warm_start_days <= 3650:
            raise ValueError(f"EnvConfig.warm_start_days must be in [0, 3650], got {self.warm_start_days!r}")


def gap_bucket(gap_seconds: float | None) -> int:
    """Contracts §2: 1 = first event, else 2 + floor(log2(1 + gap)), capped at 31."""
    if gap_seconds is None:
        return FIRST_EVENT_BUCKET
    return int(gap_bucket_of(gap_seconds))


class ShopperEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, config: EnvConfig | None = None, world: World | None = None) -> None:
        self.config = config or EnvConfig()
        if world is not None and world.cfg != self.config.sim:
            raise ValueError("world was built from a different SimConfig than config.sim")
        self.world = world or World(self.config.sim)
        cat, c = self.world.catalogue, self.config
        n_items, n_cat, h = cat.n_items, len(cat.cat_names), c.history_len
        self.action_space = spaces.MultiDiscrete(np.full(c.slate_size, n_items, dtype=np.int64))
        self.observation_space = spaces.Dict({
            "items": spaces.MultiDiscrete(np.full(h, n_items + 1, dtype=np.int64)),
            "event_types": spaces.MultiDiscrete(np.full(h, NUM_EVENT_TYPE_INDICES, dtype=np.int64)),
            "categories": spaces.MultiDiscrete(np.full(h, n_cat + 1, dtype=np.int64)),
            "gap_buckets": spaces.MultiDiscrete(np.full(h, GAP_BUCKETS, dtype=np.int64)),
            "query": spaces.Discrete(n_cat + 1),
            "step": spaces.Discrete(c.max_steps + 1),
        })
        self.item_ids: list[str] = cat.item_ids
        self.user_ids: list[str] = [World.user_id(i) for i in range(c.n_users)]
        self.users = self.world.users(np.arange(c.n_users))  # ground-truth parameters, row = user index
        self.live_start = c.sim.start_time + c.warm_start_days * SECONDS_PER_DAY
        self._warm: dict[int, tuple[list[dict], ShopperState]] = {}  # block -> (events by user, final state)
        self._base_seed: int | None = None
        self._user, self._query, self._done = -1, 0, True
        self._wipe()

    # ------------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None or self._base_seed is None:
            self._base_seed = int(seed) if seed is not None else int(self.np_random.integers(2**62))
            self._wipe()
        user = self._pick_user(options or {})
        self._load(user)
        st, rows = self.state, np.array([user])
        self._rng = child_rng(self._base_seed, _LIVE_KEY, user, int(st.sessions[user]))
        u = self._rng.random(SESSION_START_UNIFORMS + 1)
        rate = self.users.session_rate[user] / SECONDS_PER_DAY
        t_start = max(st.t[user], self.live_start) + MIN_SESSION_GAP_S - math.log1p(-u[-1]) / rate
        searched = bool(start_sessions(self.config.sim, self.world.catalogue, self.users, st, rows,
                                       np.array([t_start]), u[None, :-1])[0])
        self._user, self._done = user, False
        self._session_id = f"{self.user_ids[user]}-{int(st.sessions[user]) - 1}"
        self._query = int(st.intent[user]) + 1 if searched else 0
        events = []
        if searched:
            top = int(self.world.catalogue.top_item(st.intent[rows])[0])
            events.append(self._event(top, EVENT_TYPE_INDEX["search"], t_start, query=True))
        self._history[user].extend(events)
        return self._obs(), {"user": user, "user_id": self.user_ids[user], "session_id": self._session_id,
                             "events": events}

    def step(self, action):
        if self._done:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset() first")
        slate = self._check_action(action)  # (1, k)
        cfg, cat, st, rows = self.config.sim, self.world.catalogue, self.state, np.array([self._user])
        t = st.t[rows]
        util = utility(cfg, cat, self.users, rows, slate, t, context(st, rows))  # (1, k)
        affordable = cat.price[slate] <= st.budget_left[rows][:, None]
        u = self._rng.random((1, B.uniforms_per_step(slate.shape[1])))
        out = B.respond(cfg, u, slate, util, B.first_occurrence(slate), affordable, st.step[rows], t)
        ended = bool(after_step(cat, st, rows, slate, out, self.config.max_steps)[0])
        events = [self._event(int(out.items[0, j]), int(out.types[0, j]), float(out.times[0, j]))
                  for j in np.flatnonzero(out.emitted[0])]
        self._history[self._user].extend(events)
        bought = [e for e in events if e["event_type"] == "purchase"]
        revenue = float(sum(e["price"] for e in bought))
        terminated = bool(out.leave[0])
        truncated = ended and not terminated
        self._done = terminated or truncated
        reward = float(len(bought)) if self.config.reward == "purchases" else revenue
        clicked = int(out.click[0])
        info = {"user": self._user, "user_id": self.user_ids[self._user], "session_id": self._session_id,
                "events": events, "clicked": self.item_ids[slate[0, clicked]] if clicked >= 0 else None,
                "purchases": len(bought), "revenue": revenue}
        return self._obs(), reward, terminated, truncated, info

    # ------------------------------------------------------------------ for A/B harnesses

    def true_scores(self, user: int | None = None) -> np.ndarray:
        """(n_items,) true utility of every item for ``user`` (default: the current one) now,
        in their current session context (intent, last click, recent purchases, due consumables)."""
        user = self._user if user is None else int(user)
        if not 0 <= user < self.config.n_users:
            raise ValueError(f"user must be in [0, {self.config.n_users}), got {user} (reset() first?)")
        self._load(user)
        rows = np.array([user])
        items = np.arange(self.world.catalogue.n_items)[None, :]
        return utility(self.config.sim, self.world.catalogue, self.users, rows, items, self.state.t[rows],
                       context(self.state, rows))[0]

    def history(self, user: int | None = None) -> list[dict]:
        """The user's events so far (organic warm start, then live), oldest first, raw ids."""
        user = self._user if user is None else int(user)
        self._load(user)
        return list(self._history[user])

    def user_index(self, user_id: str) -> int:
        index = World.user_index(user_id)
        if index >= self.config.n_users:
            raise ValueError(f"user {user_id!r} is outside the population of {self.config.n_users}")
        return index

    # ------------------------------------------------------------------ internals

    def _wipe(self) -> None:
        self.state = new_state(self.users, self.live_start)
        self._history: dict[int, list[dict]] = {}

    def _pick_user(self, options: dict) -> int:
        if "user_id" in options:
            return self.user_index(str(options["user_id"]))
        if "user" in options:
            user = int(options["user"])
            if not 0 <= user < self.config.n_users:
                raise ValueError(f"options['user'] must be in [0, {self.config.n_users}), got {user}")
            return user
        return int(self.np_random.integers(self.config.n_users))

    def _load(self, user: int) -> None:
        """First sight of a user since the last wipe: their organic history and state, if warm-started."""
        if user in self._history:
            return
        self._history[user] = []
        if self.config.warm_start_days <= 0:
            return
        ub = self.config.sim.user_block
        block, row = divmod(user, ub)
        if block not in self._warm:
            ocfg = OrganicConfig(users=(block + 1) * ub, days=self.config.warm_start_days)
            events, final = run_block(self.world, ocfg, block)
            table = events_table(self.world, events, block * ub, (block + 1) * ub)
            by_user: dict[int, list[dict]] = {}
            for event in table.to_pylist():
                by_user.setdefault(World.user_index(event["user_id"]), []).append(event)
            self._warm[block] = (by_user, final)
        by_user, final = self._warm[block]
        self._history[user] = list(by_user.get(user, []))
        for f in fields(ShopperState):
            getattr(self.state, f.name)[user] = getattr(final, f.name)[row]

    def _check_action(self, action) -> np.ndarray:
        slate = np.asarray(action, dtype=np.int64).reshape(1, -1)
        n, k = self.world.catalogue.n_items, self.config.slate_size
        if slate.shape[1] != k or slate.min() < 0 or slate.max() >= n:
            raise ValueError(f"action must be {k} item indices in [0, {n}), got {np.asarray(action).tolist()}")
        return slate

    def _event(self, item: int, etype: int, ts: float, query: bool = False) -> dict:
        cat = self.world.catalogue
        c = int(cat.category[item])
        return {"user_id": self.user_ids[self._user] if self._user >= 0 else None, "item_id": self.item_ids[item],
                "event_type": EVENT_TYPES[etype - 1], "timestamp": float(ts), "session_id": self._session_id,
                "category_id": f"c{c}", "price": float(cat.price[item]), "query": cat.cat_names[c] if query else None}

    def _obs(self) -> dict[str, np.ndarray]:
        h, cat = self.config.history_len, self.world.catalogue
        history = self._history[self._user]
        recent = history[-h:]
        out = {k: np.zeros(h, dtype=np.int64) for k in SEQUENCE_FEATURES}
        off = h - len(recent)
        prev = history[-h - 1]["timestamp"] if len(history) > h else None
        for j, e in enumerate(recent):
            item = int(e["item_id"][1:])
            out["items"][off + j] = item + 1
            out["event_types"][off + j] = EVENT_TYPE_INDEX[e["event_type"]]
            out["categories"][off + j] = int(cat.category[item]) + 1
            out["gap_buckets"][off + j] = gap_bucket(None if prev is None else e["timestamp"] - prev)
            prev = e["timestamp"]
        out["query"] = np.int64(self._query)
        out["step"] = np.int64(min(int(self.state.step[self._user]), self.config.max_steps))
        return out

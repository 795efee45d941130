"""Closed-loop simulated A/B tests: the same simulated shoppers against every policy.

Common random numbers: session s of user u gets the seed ``(config.seed, u, s)`` in every
arm, so the shopper, their intent and every random draw of the funnel start identical;
arms differ only through the slates their policy shows (and what the shopper does with
them). The sessions are summarised per user in ``ab_summary.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from seqrec_ray.store.base import StoredEvent

from .ab_summary import SessionResult, latency_summary, summarize
from .policies import OraclePolicy, Policy

if TYPE_CHECKING:
    from seqrec_ray.sim.env import ShopperEnv
    from seqrec_ray.sim.world import World


@dataclass(frozen=True)
class ABConfig:
    """How many shoppers, sessions and slates; the seed shared by every arm."""

    users: int = field(default=200, metadata={"help": (
        "simulated shoppers per arm (the same ones in every arm), drawn without replacement from the population")})
    sessions_per_user: int = 2
    seed: int = field(default=0, metadata={"help": "seed shared by every arm (common random numbers)"})
    slate_size: int = field(default=10, metadata={"help": "items per slate"})
    max_steps: int = field(default=20, metadata={"help": "slates per session at most"})
    level: float = field(default=0.95, metadata={"help": "confidence level of the intervals"})

    def __post_init__(self) -> None:
        for name in ("users", "sessions_per_user", "slate_size", "max_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ABConfig.{name} must be a positive int, got {value!r}")
        if self.users < 2:
            raise ValueError(f"ABConfig.users must be >= 2 for a paired test, got {self.users}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"ABConfig.seed must be a non-negative int, got {self.seed!r}")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"ABConfig.level must be in (0, 1), got {self.level!r}")


def make_env(world: World, sim_summary: dict, config: ABConfig) -> ShopperEnv:
    """A ShopperEnv over the population of the organic logs, warm-started with them.

    ``warm_start_days`` = the logs' days, so each shopper arrives with exactly the history
    in the logs (what the trained model and the popularity counts saw), and live sessions
    start after the logged period.
    """
    from seqrec_ray.sim.env import EnvConfig, ShopperEnv

    env_config = EnvConfig(
        sim=world.cfg,
        n_users=int(sim_summary["users"]),
        slate_size=config.slate_size,
        max_steps=config.max_steps,
        reward="revenue",
        warm_start_days=float(sim_summary["organic"]["days"]),
    )
    return ShopperEnv(env_config, world=world)


def pick_users(population: int, n: int, seed: int) -> np.ndarray:
    """``n`` distinct user indices from ``[0, population)``, sorted; the same for every arm."""
    if n > population:
        raise ValueError(f"asked for {n} A/B users but the simulated population has only {population}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_USERS_KEY,)))
    return np.sort(rng.choice(population, size=n, replace=False))


def run_arm(env: ShopperEnv, policy: Policy, users: np.ndarray, config: ABConfig,
            progress: bool = False) -> list[SessionResult]:
    """Every user's sessions under one policy, from a freshly reset population.

    The first reset passes the seed: it wipes every shopper's state, so each arm starts
    from the same world whatever ran before it.
    """
    from tqdm.auto import tqdm

    results = []
    seed: int | None = config.seed
    for user in tqdm(users.tolist(), desc=f"arm {policy.name}", unit="user", disable=not progress, leave=False):
        user_id = env.user_ids[user]
        history: list[StoredEvent] = []
        for session in range(config.sessions_per_user):
            _, info = env.reset(seed=seed, options={"user": user})
            seed = None
            opening = [_stored(e) for e in info["events"]]  # a search that starts the session
            if session == 0:
                past = env.history(user)
                history = [_stored(e) for e in past[: len(past) - len(opening)]]
                policy.begin(user_id, history)
            history.extend(opening)
            policy.observe(user_id, opening)
            results.append(_run_session(env, policy, user, session, history, config))
    return results


def _run_session(env, policy: Policy, user: int, session: int, history: list[StoredEvent],
                 config: ABConfig) -> SessionResult:
    """One session: slates until the shopper leaves; ``history`` grows in place."""
    user_id = env.user_ids[user]
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(_POLICY_KEY, user, session)))
    counts = dict(steps=0, impressions=0, clicks=0, carts=0, purchases=0, revenue=0.0)
    done = False
    while not done:
        slate = _slate_indices(env, policy, policy.recommend(user_id, history, config.slate_size, rng), config)
        _, _, terminated, truncated, info = env.step(slate)
        done = terminated or truncated
        events = [_stored(e) for e in info["events"]]
        history.extend(events)
        policy.observe(user_id, events)
        counts["steps"] += 1
        counts["impressions"] += len(set(slate.tolist()))
        for e in events:
            counts["clicks"] += e.event_type == "click"
            counts["carts"] += e.event_type == "cart"
            if e.event_type == "purchase":
                counts["purchases"] += 1
                counts["revenue"] += float(e.price or 0.0)
    return SessionResult(policy.name, user_id, session, **counts)


def run_ab(env: ShopperEnv, policies: Sequence[Policy], config: ABConfig, progress: bool = False) -> dict:
    """Every policy against the same users and seeds: sessions, summary, latency per arm."""
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must be unique, got {names}")
    users = pick_users(env.config.n_users, config.users, config.seed)
    sessions: list[SessionResult] = []
    latency = {}
    for policy in policies:
        sessions += run_arm(env, policy, users, config, progress)
        measured = latency_summary(policy.latencies_ms())
        if measured:
            latency[policy.name] = measured
    summary = summarize(sessions, names, config.level, seed=config.seed)
    return {"config": asdict(config), "summary": summary, "latency": latency, "sessions": sessions}


def oracle_policy(env: ShopperEnv) -> OraclePolicy:
    """Ranks by the simulator's true utility for the current shopper in their current session."""
    return OraclePolicy(lambda user_id, history: (env.item_ids, env.true_scores(env.user_index(user_id))))


def _slate_indices(env, policy: Policy, raw_ids: Sequence[str], config: ABConfig) -> np.ndarray:
    """Raw ids -> (k,) env item indices; a short slate is padded with repeats, which the
    shopper does not see twice (the env treats a repeated item as an empty slot)."""
    if not raw_ids:
        raise RuntimeError(f"policy {policy.name!r} returned an empty slate")
    try:
        idx = [env.world.item_index(str(raw)) for raw in raw_ids[: config.slate_size]]
    except ValueError as exc:
        raise RuntimeError(f"policy {policy.name!r} recommended an item the simulator does not sell: {exc}") from exc
    idx += [idx[-1]] * (config.slate_size - len(idx))
    return np.asarray(idx, dtype=np.int64)


_EVENT_FIELDS = tuple(StoredEvent.__dataclass_fields__)
_USERS_KEY, _POLICY_KEY = 101, 102  # SeedSequence spawn keys: apart from the env's own streams


def _stored(event: dict) -> StoredEvent:
    return StoredEvent(**{name: event.get(name) for name in _EVENT_FIELDS})

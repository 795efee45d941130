"""Closed-loop simulated A/B tests: the same simulated shoppers against every policy.

Common random numbers: session s of user u gets the seed ``(config.seed, u, s)`` in every
arm, so the shopper, their intent and every random draw of the funnel start identical;
arms differ only through the slates their policy shows (and what the shopper does with
them). The unit of analysis is the user: each arm's per-session metrics are averaged per
user, and arms are compared with a paired t-test on the per-user differences
(``stats.paired_test``).

Per-session metrics:
    ctr                  clicks / items shown in the session
    add_to_cart_rate     1 if the session had at least one add-to-cart, else 0
    conversion_rate      1 if the session had at least one purchase, else 0
    revenue_per_session  sum of purchased items' prices
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from seqrec_ray.store.base import StoredEvent

from .policies import OraclePolicy, Policy
from .stats import holm_adjust, mean_ci, paired_test

if TYPE_CHECKING:
    from seqrec_ray.sim.env import ShopperEnv
    from seqrec_ray.sim.world import World

METRICS = ("ctr", "add_to_cart_rate", "conversion_rate", "revenue_per_session")
METRIC_LABELS = {
    "ctr": "CTR",
    "add_to_cart_rate": "add-to-cart rate",
    "conversion_rate": "conversion rate",
    "revenue_per_session": "revenue / session",
}


@dataclass(frozen=True)
class SessionResult:
    """What one simulated session did under one arm."""

    arm: str
    user_id: str
    session: int
    steps: int  # slates shown
    impressions: int  # items shown
    clicks: int
    carts: int
    purchases: int
    revenue: float

    def metrics(self) -> dict[str, float]:
        return {
            "ctr": self.clicks / self.impressions if self.impressions else 0.0,
            "add_to_cart_rate": float(self.carts > 0),
            "conversion_rate": float(self.purchases > 0),
            "revenue_per_session": float(self.revenue),
        }


def per_user_means(sessions: Sequence[SessionResult], arm: str, users: Sequence[str]) -> dict[str, np.ndarray]:
    """Each metric averaged over each user's sessions in ``arm``: metric -> (U,) in ``users`` order."""
    sums = {m: np.zeros(len(users)) for m in METRICS}
    counts = np.zeros(len(users))
    row = {u: i for i, u in enumerate(users)}
    for s in sessions:
        if s.arm != arm:
            continue
        i = row[s.user_id]
        counts[i] += 1
        for metric, value in s.metrics().items():
            sums[metric][i] += value
    if np.any(counts == 0):
        missing = [users[i] for i in np.flatnonzero(counts == 0)[:5]]
        raise ValueError(f"arm {arm!r} has no sessions for users {missing}: arms must share users")
    return {m: sums[m] / counts for m in METRICS}


def summarize(sessions: Sequence[SessionResult], arms: Sequence[str], level: float = 0.95, seed: int = 0) -> dict:
    """Per-arm means with CIs and every pairwise paired test (later arm vs earlier arm).

    Holm-adjusted p-values (``p_holm``) control the family-wise error over all pairs of
    one metric; ``p_value`` is the single comparison's.
    """
    if len(arms) < 1:
        raise ValueError("summarize needs at least one arm")
    users = sorted({s.user_id for s in sessions})
    means = {arm: per_user_means(sessions, arm, users) for arm in arms}
    per_arm = {}
    for arm in arms:
        mine = [s for s in sessions if s.arm == arm]
        per_arm[arm] = {
            "sessions": len(mine),
            "users": len(users),
            "totals": {
                key: float(sum(getattr(s, key) for s in mine))
                for key in ("steps", "impressions", "clicks", "carts", "purchases", "revenue")
            },
            "metrics": {m: mean_ci(means[arm][m], level).to_dict() for m in METRICS},
        }
    comparisons = []
    for j, a in enumerate(arms):
        for b in arms[:j]:
            for m in METRICS:
                test = paired_test(means[a][m], means[b][m], level=level, seed=seed).to_dict()
                comparisons.append({"a": a, "b": b, "metric": m, **test})
    for m in METRICS:
        rows = [c for c in comparisons if c["metric"] == m]
        for c, p in zip(rows, holm_adjust([c["p_value"] for c in rows])):
            c["p_holm"] = p
    return {
        "level": level,
        "unit": "user",
        "test": "two-sided paired t-test on per-user mean differences (df = users - 1)",
        "arms": per_arm,
        "comparisons": comparisons,
    }


def latency_summary(latencies: dict[str, list[float]]) -> dict[str, dict]:
    """Per endpoint: calls, mean, p50, p90, p99 (ms)."""
    out = {}
    for endpoint, values in latencies.items():
        if not values:
            continue
        arr = np.asarray(values)
        out[endpoint] = {
            "calls": int(len(arr)),
            "mean_ms": float(arr.mean()),
            "p50_ms": float(np.percentile(arr, 50)),
            "p90_ms": float(np.percentile(arr, 90)),
            "p99_ms": float(np.percentile(arr, 99)),
        }
    return out


def format_table(summary: dict, latency: dict[str, dict] | None = None) -> str:
    """The per-arm table, the pairwise tests and any HTTP latency, as plain text."""
    pct = int(round(summary["level"] * 100))
    header = f"{'arm':<16}{'users':>6}{'sessions':>9}" + "".join(f"{METRIC_LABELS[m]:>30}" for m in METRICS)
    lines = [f"Per-arm means per session with {pct}% CIs (unit: user)", header, "-" * len(header)]
    for arm, row in summary["arms"].items():
        cells = "".join(f"{_fmt_ci(row['metrics'][m], m):>30}" for m in METRICS)
        lines.append(f"{arm:<16}{row['users']:>6}{row['sessions']:>9}{cells}")
    lines += ["", f"Paired comparisons ({summary['test']}; * = Holm p < {1 - summary['level']:.2f})"]
    for c in summary["comparisons"]:
        star = "*" if c["p_holm"] < 1 - summary["level"] else " "
        lift = "" if c["relative_lift"] is None else f" ({c['relative_lift']:+.1%})"
        lines.append(
            f"{star} {c['a']} vs {c['b']:<14} {METRIC_LABELS[c['metric']]:<20} diff {_num(c['diff'], c['metric'])}"
            f"{lift} CI [{_num(c['diff_low'], c['metric'])}, {_num(c['diff_high'], c['metric'])}]"
            f" t={c['t']:.2f} p={_p(c['p_value'])} p_holm={_p(c['p_holm'])}"
        )
    for arm, endpoints in (latency or {}).items():
        for endpoint, s in endpoints.items():
            lines.append(
                f"latency {arm} {endpoint:<10} calls {s['calls']:>6}  p50 {s['p50_ms']:.1f} ms"
                f"  p90 {s['p90_ms']:.1f} ms  p99 {s['p99_ms']:.1f} ms"
            )
    return "\n".join(lines)


def plot_summary(summary: dict, path: str | Path) -> Path:
    """One panel per metric: a bar per arm with its confidence interval."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    arms = list(summary["arms"])
    fig = Figure(figsize=(4 * len(METRICS), 3.6))
    FigureCanvasAgg(fig)
    for i, metric in enumerate(METRICS):
        ax = fig.add_subplot(1, len(METRICS), i + 1)
        stats = [summary["arms"][a]["metrics"][metric] for a in arms]
        means = np.array([s["mean"] for s in stats])
        err = np.array([[s["mean"] - s["low"] for s in stats], [s["high"] - s["mean"] for s in stats]])
        ax.bar(range(len(arms)), means, yerr=err, capsize=4, color=[f"C{k}" for k in range(len(arms))])
        ax.set_xticks(range(len(arms)), arms, rotation=30, ha="right", fontsize=8)
        ax.set_title(METRIC_LABELS[metric])
    fig.suptitle(f"Simulated A/B test: per-session means, {int(summary['level'] * 100)}% CIs over users")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def write_sessions_csv(sessions: Sequence[SessionResult], path: str | Path) -> Path:
    """Every session's counts, so the statistics can be checked by hand."""
    path = Path(path)
    names = list(SessionResult.__dataclass_fields__)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names + list(METRICS))
        writer.writeheader()
        for s in sessions:
            writer.writerow({**asdict(s), **s.metrics()})
    return path


def write_json(obj: dict, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str))
    return path


def _p(p: float) -> str:
    return "<1e-15" if p < 1e-15 else f"{p:.3g}"  # below that the t tail underflows to 0


def _fmt_ci(ci: dict, metric: str) -> str:
    return f"{_num(ci['mean'], metric)} [{_num(ci['low'], metric)}, {_num(ci['high'], metric)}]"


def _num(x: float, metric: str) -> str:
    return f"{x:.2f}" if metric == "revenue_per_session" else f"{x:.4f}"


# ---------------------------------------------------------------------------- the harness


@dataclass(frozen=True)
class ABConfig:
    """How many shoppers, sessions and slates; the seed shared by every arm."""

    users: int = 200  # drawn without replacement from the simulated population
    sessions_per_user: int = 2
    seed: int = 0
    slate_size: int = 10
    max_steps: int = 20  # slates per session before it is cut off
    level: float = 0.95

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


def make_env(world: "World", sim_summary: dict, config: ABConfig) -> "ShopperEnv":
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


def run_arm(env: "ShopperEnv", policy: Policy, users: np.ndarray, config: ABConfig,
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


def run_ab(env: "ShopperEnv", policies: Sequence[Policy], config: ABConfig, progress: bool = False) -> dict:
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


def oracle_policy(env: "ShopperEnv") -> OraclePolicy:
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


# ---------------------------------------------------------------------------- the job

ARM_KINDS = ("random", "popularity", "recent", "checkpoint", "oracle", "http")


@dataclass(frozen=True)
class ArmSpec:
    """One arm: ``kind`` from ARM_KINDS; ``target`` is the checkpoint dir or the URL."""

    label: str
    kind: str
    target: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ARM_KINDS:
            raise ValueError(f"unknown arm {self.kind!r}; arms are {', '.join(ARM_KINDS)}")
        if self.kind in ("checkpoint", "http") and not self.target:
            raise ValueError(f"arm {self.label!r}: {self.kind} needs a target (checkpoint:PATH, http:URL or --url)")
        if not self.label or any(c in self.label for c in ",=/ "):
            raise ValueError(f"arm label {self.label!r} must be non-empty without ',', '=', '/' or spaces")


def parse_arms(text: str, url: str | None = None) -> tuple[ArmSpec, ...]:
    """``random,popularity,e3=checkpoint:runs/e3/best,oracle`` -> ArmSpecs.

    An item is ``[LABEL=]KIND[:TARGET]``; labels default to the kind (numbered when a kind
    repeats). ``http`` without a target uses ``url``; a ``url`` with no http arm adds one.
    """
    specs: list[ArmSpec] = []
    seen: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        label, _, spec = item.partition("=") if "=" in item.split(":", 1)[0] else ("", "", item)
        kind, _, target = spec.partition(":")
        kind = kind.strip().lower()
        seen[kind] = seen.get(kind, 0) + 1
        default = kind if seen[kind] == 1 else f"{kind}{seen[kind]}"
        specs.append(ArmSpec(label or default, kind, target or (url if kind == "http" else None)))
    if url and not any(s.kind == "http" for s in specs):
        specs.append(ArmSpec("http", "http", url))
    labels = [s.label for s in specs]
    if len(specs) < 2:
        raise ValueError(f"an A/B test needs at least two arms, got {labels or 'none'}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"arm labels must be unique, got {labels} (name them LABEL=KIND:TARGET)")
    return tuple(specs)


@dataclass(frozen=True)
class ABJobConfig:
    sim_dir: str  # organic logs + ground_truth/ from jobs/simulate.py
    output: str
    arms: tuple[ArmSpec, ...]
    ab: ABConfig = ABConfig()
    exclude_purchased: bool = False  # checkpoint and http arms alike, so they stay comparable
    http_user_prefix: str | None = None  # None: a fresh prefix per run (see HttpPolicy)
    api_key: str | None = None
    offline_data: str | None = None  # featurized organic logs: offline NDCG@10 per checkpoint arm
    offline_split: str = "test"
    torch_threads: int = 1  # one small history per call: more threads only add overhead

    def __post_init__(self) -> None:
        if self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {self.torch_threads!r}")
        if not (Path(self.sim_dir) / "ground_truth" / "sim.json").is_file():
            raise ValueError(f"--sim-dir {self.sim_dir!r} holds no simulator ground truth (ground_truth/sim.json); "
                             "create it with jobs/simulate.py")
        if not self.output:
            raise ValueError("output directory must be given")
        for arm in self.arms:
            if arm.kind == "checkpoint" and not (Path(arm.target) / "model.json").is_file():
                raise ValueError(f"arm {arm.label!r}: {arm.target!r} is not a checkpoint directory (no model.json)")
        if self.offline_data is not None:
            if not (Path(self.offline_data) / "manifest.json").is_file():
                raise ValueError(f"--offline-data {self.offline_data!r} is not a featurize artifacts directory")
            if not any(a.kind == "checkpoint" for a in self.arms):
                raise ValueError("--offline-data needs at least one checkpoint arm")
        if self.offline_split not in ("valid", "test"):
            raise ValueError(f"offline split must be 'valid' or 'test', got {self.offline_split!r}")


def organic_item_counts(sim_dir: str | Path) -> dict[str, int]:
    """Events per item in the organic logs (the popularity a shop would know)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted(Path(sim_dir).glob("part-*.parquet"))
    if not files:
        raise ValueError(f"{sim_dir!r} holds no organic log parts (part-*.parquet)")
    counts: dict[str, int] = {}
    for file in files:
        for row in pc.value_counts(pq.read_table(file, columns=["item_id"])["item_id"]).to_pylist():
            counts[row["values"]] = counts.get(row["values"], 0) + row["counts"]
    return counts


def build_policy(arm: ArmSpec, env: "ShopperEnv", item_counts: dict[str, int], job: ABJobConfig, run_tag: str) -> Policy:
    from .policies import CheckpointPolicy, HttpPolicy, PopularityPolicy, RandomPolicy, RecentPolicy

    if arm.kind == "random":
        policy: Policy = RandomPolicy(env.item_ids)
    elif arm.kind == "popularity":
        policy = PopularityPolicy(item_counts)
    elif arm.kind == "recent":
        policy = RecentPolicy(item_counts)
    elif arm.kind == "checkpoint":
        policy = CheckpointPolicy(arm.target, exclude_purchased=job.exclude_purchased)
    elif arm.kind == "oracle":
        policy = oracle_policy(env)
    else:
        prefix = f"ab-{run_tag}-{arm.label}-" if job.http_user_prefix is None else job.http_user_prefix
        policy = HttpPolicy(arm.target, exclude_purchased=job.exclude_purchased, user_prefix=prefix, api_key=job.api_key)
    policy.name = arm.label
    return policy


def run_ab_job(job: ABJobConfig, log=print, progress: bool = True) -> dict:
    """The whole job: world + env from the sim dir, one policy per arm, the A/B run, and
    the report (table, JSON, sessions CSV, PNG; offline vs online when asked)."""
    import time

    from .logs import load_world

    if any(a.kind == "checkpoint" for a in job.arms) or job.offline_data:
        import torch

        torch.set_num_threads(job.torch_threads)
    world, sim_summary = load_world(job.sim_dir)
    env = make_env(world, sim_summary, job.ab)
    counts = organic_item_counts(job.sim_dir)
    run_tag = f"{job.ab.seed}-{int(time.time())}"
    policies = [build_policy(arm, env, counts, job, run_tag) for arm in job.arms]
    log(f"A/B: {len(policies)} arms x {job.ab.users} users x {job.ab.sessions_per_user} sessions, "
        f"slates of {job.ab.slate_size}, seed {job.ab.seed}, population {env.config.n_users} "
        f"(warm start {sim_summary['organic']['days']} days of organic history)")
    try:
        result = run_ab(env, policies, job.ab, progress=progress)
    finally:
        for policy in policies:
            policy.close()
    result["arms"] = [asdict(a) for a in job.arms]
    result["sim_dir"] = str(job.sim_dir)
    result["cold_start_responses"] = {p.name: p.cold_start_responses for p in policies if hasattr(p, "cold_start_responses")}
    if job.offline_data:
        ckpts = [(a.label, a.target) for a in job.arms if a.kind == "checkpoint"]
        result["offline_vs_online"] = offline_vs_online(ckpts, job.offline_data, result["summary"], job.offline_split)
    result["files"] = write_report(result, job.output)
    result["table"] = format_table(result["summary"], result["latency"])
    return result


def write_report(result: dict, output: str | Path) -> dict[str, str]:
    """ab_results.json (everything but the sessions), sessions.csv, ab_report.png, table.txt,
    and offline_vs_online.{json,png} when present."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "json": write_json({k: v for k, v in result.items() if k != "sessions"}, out / "ab_results.json"),
        "sessions": write_sessions_csv(result["sessions"], out / "sessions.csv"),
        "plot": plot_summary(result["summary"], out / "ab_report.png"),
    }
    (out / "table.txt").write_text(format_table(result["summary"], result["latency"]) + "\n")
    files["table"] = out / "table.txt"
    if result.get("offline_vs_online"):
        files["offline_vs_online_json"] = write_json(result["offline_vs_online"], out / "offline_vs_online.json")
        files["offline_vs_online_plot"] = plot_offline_vs_online(result["offline_vs_online"], out / "offline_vs_online.png")
    return {k: str(v) for k, v in files.items()}


# ---------------------------------------------------------------------------- offline vs online


def offline_vs_online(checkpoints: Sequence[tuple[str, str]], data_dir: str, summary: dict, split: str = "test") -> dict:
    """Offline NDCG@10 of each checkpoint arm on the held-out organic logs beside its online
    (simulated) conversion and revenue, plus the correlation across checkpoints.

    NDCG@10 is reported with and without masking the user's earlier items; the unmasked
    one is plotted, because the online arms may recommend items a user has seen.
    """
    from seqrec_ray.train.evaluation import EvaluateConfig, run_evaluation

    rows = []
    for label, path in checkpoints:
        offline = {}
        for masked in (False, True):
            config = EvaluateConfig(data_dir=data_dir, checkpoint_dir=path, split=split, mask_history=masked, baselines=False)
            offline["masked" if masked else "unmasked"] = run_evaluation(config)["full"]["model"]
        online = summary["arms"][label]["metrics"]
        rows.append({
            "arm": label, "checkpoint": path,
            "ndcg@10": offline["unmasked"]["ndcg@10"], "hr@10": offline["unmasked"]["hr@10"],
            "ndcg@10_masked": offline["masked"]["ndcg@10"], "hr@10_masked": offline["masked"]["hr@10"],
            "conversion_rate": online["conversion_rate"], "revenue_per_session": online["revenue_per_session"],
            "ctr": online["ctr"],
        })
    x = np.array([r["ndcg@10"] for r in rows])
    y = np.array([r["conversion_rate"]["mean"] for r in rows])
    return {"split": split, "data": data_dir, "rows": rows, "pearson": _corr(x, y), "spearman": _corr(_ranks(x), _ranks(y))}


def plot_offline_vs_online(report: dict, path: str | Path) -> Path:
    """Online conversion (with CI) against offline NDCG@10, one point per checkpoint."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.8))
    FigureCanvasAgg(fig)
    for i, metric in enumerate(("conversion_rate", "revenue_per_session")):
        ax = fig.add_subplot(1, 2, i + 1)
        for j, row in enumerate(report["rows"]):
            ci = row[metric]
            ax.errorbar(row["ndcg@10"], ci["mean"], yerr=[[ci["mean"] - ci["low"]], [ci["high"] - ci["mean"]]],
                        fmt="o", capsize=4, color=f"C{j}")
            ax.annotate(row["arm"], (row["ndcg@10"], ci["mean"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xlabel(f"offline NDCG@10 ({report['split']} split, unmasked)")
        ax.set_ylabel(f"online {METRIC_LABELS[metric]}")
    r = report["spearman"]
    fig.suptitle("Offline vs online across checkpoints" + ("" if r is None else f" (Spearman {r:+.2f})"))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    return ranks


def _corr(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation; None when undefined (fewer than 3 points or no spread)."""
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])

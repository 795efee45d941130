"""What one simulated session measured, and the statistics over sessions of several arms.

The unit of analysis is the user: each arm's per-session metrics are averaged per user,
and arms are compared with a paired t-test on the per-user differences
(``stats.paired_test``); that is valid because every arm meets the same users with the
same seeds (see ``ab.py``).

Per-session metrics:
    ctr                  clicks / items shown in the session
    add_to_cart_rate     1 if the session had at least one add-to-cart, else 0
    conversion_rate      1 if the session had at least one purchase, else 0
    revenue_per_session  sum of purchased items' prices
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .stats import holm_adjust, mean_ci, paired_test

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

"""Does offline quality predict online results? Offline NDCG@10 of checkpoints against
their simulated A/B conversion, with the correlation across checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr, spearmanr

from .ab_summary import METRIC_LABELS


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
    x = [r["ndcg@10"] for r in rows]
    y = [r["conversion_rate"]["mean"] for r in rows]
    return {"split": split, "data": data_dir, "rows": rows, **correlations(x, y)}


def correlations(x: Sequence[float], y: Sequence[float]) -> dict[str, float | None]:
    """Pearson and Spearman (tied values share their average rank) correlation of x and y;
    each is None when undefined: fewer than 3 points or either side without spread."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError(f"correlation needs paired values, got {len(x)} and {len(y)}")
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"pearson": None, "spearman": None}
    return {"pearson": float(pearsonr(x, y).statistic), "spearman": float(spearmanr(x, y).statistic)}


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

"""The files and text of an A/B run: table, per-arm plot, sessions CSV, results JSON."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .ab_summary import METRIC_LABELS, METRICS, SessionResult
from .offline_online import plot_offline_vs_online


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


def _p(p: float) -> str:
    return "<1e-15" if p < 1e-15 else f"{p:.3g}"  # tinier p-values say more about the t model's tail than about the arms


def _fmt_ci(ci: dict, metric: str) -> str:
    return f"{_num(ci['mean'], metric)} [{_num(ci['low'], metric)}, {_num(ci['high'], metric)}]"


def _num(x: float, metric: str) -> str:
    return f"{x:.2f}" if metric == "revenue_per_session" else f"{x:.4f}"

"""Several seeds of one configuration: the per-seed summaries, their mean and sample
standard deviation, a printed table and one plot of every seed's validation curve.

``jobs/train.py --seeds 0,1,2`` trains the configuration once per seed into
``OUTPUT/seed-N`` (each a complete run directory) and writes the aggregate here."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

SPLITS = ("valid", "test")


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> (0, 1, 2); ValueError names a bad or repeated seed."""
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise ValueError(f"--seeds names no seed: {text!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds repeats a seed: {text!r}")
    return seeds


def seed_directory(output_dir: str | Path, seed: int) -> Path:
    return Path(output_dir) / f"seed-{seed}"


def aggregate(summaries: dict[int, dict]) -> dict:
    """Mean and sample sd (0 for one seed) of every metric the runs share, per split, with
    the per-seed rows; epochs and train seconds as well."""
    seeds = sorted(summaries)
    result: dict = {"seeds": seeds, "runs": {str(s): summaries[s] for s in seeds}}
    for split in SPLITS:
        shared = set.intersection(*({key for key, value in summaries[s].get(split, {}).items()
                                     if isinstance(value, (int, float))} for s in seeds))
        result[split] = {key: _mean_sd([summaries[s][split][key] for s in seeds])
                         for key in sorted(shared) if key != "users"}
    for key in ("best_epoch", "epochs_run", "train_seconds"):
        result[key] = _mean_sd([summaries[s][key] for s in seeds])
    return result


def _mean_sd(values: list[float]) -> dict:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "sd": sd, "values": list(values)}


def seeds_table(result: dict, metrics: tuple[str, ...] = ("hr@10", "ndcg@10")) -> str:
    """One row per seed and a mean ± sd row: best epoch, valid and test metrics."""
    header = ["seed", "best epoch"] + [f"{split} {m}" for split in SPLITS for m in metrics]
    rows = []
    for seed in result["seeds"]:
        run = result["runs"][str(seed)]
        rows.append([str(seed), str(run["best_epoch"])]
                    + [f"{run[split][m]:.4f}" for split in SPLITS for m in metrics])
    rows.append(["mean ± sd", f"{result['best_epoch']['mean']:.1f}"]
                + [f"{result[split][m]['mean']:.4f} ± {result[split][m]['sd']:.4f}" for split in SPLITS for m in metrics])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in [header, *rows])


def write_seeds_result(result: dict, output_dir: str | Path) -> Path:
    """OUTPUT/result.json (the aggregate) and OUTPUT/seeds.png (valid NDCG@10 per epoch,
    one line per seed, each seed's best epoch marked)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "result.json"
    path.write_text(json.dumps(result, indent=2))
    _plot_seeds(output_dir, result)
    return path


def _plot_seeds(output_dir: Path, result: dict) -> None:
    import matplotlib  # imported here: slow, and only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for seed in result["seeds"]:
        history = json.loads((seed_directory(output_dir, seed) / "curves.json").read_text())
        epochs = [h["epoch"] for h in history]
        values = [h["valid"]["ndcg@10"] for h in history]
        (line,) = ax.plot(epochs, values, marker=".", label=f"seed {seed}")
        best = result["runs"][str(seed)]["best_epoch"]
        ax.plot([best], [values[best - 1]], marker="*", markersize=12, color=line.get_color())
    test = result["test"]["ndcg@10"]
    ax.set(xlabel="epoch", ylabel="valid NDCG@10",
           title=f"{len(result['seeds'])} seeds: test NDCG@10 {test['mean']:.4f} ± {test['sd']:.4f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(output_dir / "seeds.png", dpi=80)
    plt.close(fig)

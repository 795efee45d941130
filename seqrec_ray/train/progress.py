"""The lines a training run prints: one per epoch, one for the exported result."""

from __future__ import annotations

from pathlib import Path


def epoch_line(record: dict, best_epoch: int, workers: int | None = None) -> str:
    """An epoch's loss, valid HR/NDCG@10, speed and time; `` *`` marks a new best epoch.
    ``workers`` (the Ray path) adds the valid users counted and how many workers ran."""
    v = record["valid"]
    mark = " *" if best_epoch == record["epoch"] else ""
    users = f" ({v['users']} users)" if workers is not None else ""
    on = f" on {workers} workers" if workers is not None else ""
    heads = f" heads log loss {v['outcome_log_loss']:.4f}" if "outcome_log_loss" in v else ""
    return (
        f"epoch {record['epoch']:3d}  loss {record['loss']:.4f}  valid HR@10 {v['hr@10']:.4f} "
        f"NDCG@10 {v['ndcg@10']:.4f}{heads}{users}  {record['positions_per_s']:,.0f} pos/s{on}  "
        f"{record['seconds']:.1f}s (total {record['elapsed_s']:.0f}s){mark}"
    )


def result_line(summary: dict, best_dir: str | Path) -> str:
    """The best epoch's valid NDCG@10 and its checkpoint's test HR/NDCG@10."""
    test = summary["test"]
    return (
        f"[train] best epoch {summary['best_epoch']}: valid NDCG@10 {summary['valid']['ndcg@10']:.4f}, "
        f"test HR@10 {test['hr@10']:.4f} NDCG@10 {test['ndcg@10']:.4f} -> {best_dir}"
    )

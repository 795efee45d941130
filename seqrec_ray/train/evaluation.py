"""Offline evaluation of a checkpoint on an artifacts directory, with baselines.

Full-ranking metrics over the whole catalogue (S3-Rec protocol when history items are
masked); sampled-candidate metrics only when a negatives file is given, reported in
their own, labelled section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from seqrec_ray.models import scoring

from .baselines import BASELINES, ContentScorer, train_item_counts
from .batches import iterate_batches, table_to_tensors
from .examples import eval_examples
from .metrics import DEFAULT_KS, evaluate_scores
from .targets import PURCHASE


@dataclass(frozen=True)
class EvaluateConfig:
    data_dir: str = field(metadata={"help": "featurize artifacts directory the checkpoint was trained on"})
    checkpoint_dir: str = field(metadata={"help": "checkpoint directory (e.g. OUT/best)"})
    split: str = field(default="test", metadata={"help": "test | valid"})
    mask_history: bool = field(default=True, metadata={"help": "mask every earlier item of the user (the S3-Rec protocol)"})
    sampled_negatives: str | None = field(default=None, metadata={
        "help": "fixed negatives file (S3-Rec style: user neg1 ... negN per line): also report sampled metrics"})
    ks: tuple[int, ...] = field(default=DEFAULT_KS, metadata={"help": "metric cut-offs"})
    batch_size: int = field(default=1024, metadata={"help": "users per scoring batch"})
    device: str = field(default="cpu", metadata={"help": "cpu | cuda (the job's default: cuda when available)"})
    baselines: bool = field(default=True, metadata={"help": "the popularity / most-recent rows"})
    new_item_boost: float = field(default=scoring.NEW_ITEM_BOOST, metadata={"help": (
        "models with item content: added to the score of every item without training events (new "
        "products) before ranking, how much exposure new items get (bench/cold_start_tradeoff.py "
        "plots the trade-off); 0 = the model's own scores")})
    reliability_plot: str | None = field(default=None, metadata={"help": (
        "models with propensity / churn heads: write their reliability plots to this PNG path, "
        "{outcome} in it standing for purchase / churn (default: none)")})

    def __post_init__(self) -> None:
        if self.split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {self.split!r}")
        for name in ("data_dir", "checkpoint_dir"):
            if not Path(getattr(self, name)).is_dir():
                raise ValueError(f"{name} {getattr(self, name)!r} is not a directory")
        if self.sampled_negatives is not None and not Path(self.sampled_negatives).is_file():
            raise ValueError(f"sampled negatives file {self.sampled_negatives!r} does not exist")
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"ks must be positive ints, got {self.ks!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")
        object.__setattr__(self, "ks", tuple(sorted(set(self.ks))))


def run_evaluation(config: EvaluateConfig) -> dict[str, Any]:
    """Metrics of the checkpoint and the baselines: {"full": {name: metrics}, "sampled"?: ...}."""
    from seqrec_ray.data.artifacts import load_sequences
    from seqrec_ray.data.vocab import check_same_items

    from .checkpoint import load_checkpoint
    from .loop import evaluate

    ckpt = load_checkpoint(config.checkpoint_dir, device=config.device)
    check_same_items(config.data_dir, config.checkpoint_dir)
    sequences = load_sequences(config.data_dir)
    table = eval_examples(sequences, config.split, ckpt.model_config.max_len)
    tensors = table_to_tensors(table)
    result: dict[str, Any] = {
        "split": config.split,
        "mask_history": config.mask_history,
        "checkpoint": str(config.checkpoint_dir),
        "data": str(config.data_dir),
        "model": ckpt.model_config.encoder,
        "checkpoint_epoch": ckpt.meta.get("epoch"),
    }
    num_items = ckpt.model_config.num_items
    counts = train_item_counts(sequences, num_items)
    # Only a content model scores never-trained items from anything: an ID-only model's rows
    # for them are their random initialisation, which no boost should lift.
    boost = scoring.new_item_boost(torch.from_numpy(counts), config.new_item_boost if ckpt.model_config.uses_content else 0.0)
    if boost is not None:
        result["new_item_boost"] = config.new_item_boost
    scorers = {name: cls(counts) for name, cls in BASELINES.items()} if config.baselines else {}

    def batches():
        return iterate_batches(tensors, config.batch_size)

    tokens = baseline_tokens(config.data_dir, ckpt.vocab) if config.baselines else None
    if tokens is not None:
        scorers["content"] = ContentScorer(tokens, counts)

    def full_ranking(part: dict[str, torch.Tensor], purchase_head: bool = False) -> dict[str, dict]:
        def part_batches():
            return iterate_batches(part, config.batch_size)

        rows = {"model": evaluate(ckpt.model, part_batches(), config.ks, config.mask_history, config.device,
                                  item_boost=boost).to_dict()}
        if purchase_head:
            rows["model, next-purchase head"] = evaluate(
                ckpt.model, part_batches(), config.ks, config.mask_history, config.device, item_boost=boost,
                purchase_head=True).to_dict()
        for name, scorer in scorers.items():
            rows[name] = evaluate_scores(scorer, part_batches(), num_items, config.ks, config.mask_history,
                                         config.device).to_dict()
        return rows

    result["full"] = full_ranking(tensors)
    # Targets without training events (cold items: the cold-item protocol's, or items first
    # seen after training) against the rest: what item content buys, and what it costs.
    cold_target = torch.from_numpy(counts == 0)[tensors["target"]]  # (N,)
    if bool(cold_target.any()):
        result["by_target"] = {
            "cold": full_ranking({k: v[cold_target] for k, v in tensors.items()}),
            "warm": full_ranking({k: v[~cold_target] for k, v in tensors.items()}),
        }
    # Targets that are purchases: what the next-purchase head is for (a model without it
    # ranks them with its next-item vector, the comparison the head has to win).
    purchased = tensors["target_type"] == PURCHASE
    if bool(purchased.any()):
        result["purchase_targets"] = full_ranking({k: v[purchased] for k, v in tensors.items()},
                                                  purchase_head=ckpt.model.heads is not None)
    if ckpt.model.outcomes is not None:
        result["outcomes"] = _outcomes(config, ckpt, sequences)
    if config.sampled_negatives:
        negatives, oov = read_sampled_negatives(config.sampled_negatives, table.column("user_id"), ckpt.vocab)
        tensors["negatives"] = negatives
        model_s = evaluate(ckpt.model, batches(), config.ks, config.mask_history, config.device, negatives_key="negatives",
                           item_boost=boost)
        sampled = {"model": model_s.to_dict()}
        for name, scorer in scorers.items():
            sampled[name] = evaluate_scores(
                scorer, batches(), num_items, config.ks, config.mask_history, config.device, "negatives"
            ).to_dict()
        result["sampled"] = sampled
        result["sampled_negatives"] = {"file": config.sampled_negatives, "per_user": int(negatives.shape[1]), "oov": oov}
    return result


def _outcomes(config: EvaluateConfig, ckpt: Any, sequences: pa.Table) -> dict:
    """The propensity / churn report at the checkpoint's own cut-off for ``config.split``,
    with the checkpoint's calibration."""
    from .outcomes import OutcomeCutoffs, load_calibration, outcome_evaluation

    calibration = load_calibration(config.checkpoint_dir)
    plot = config.reliability_plot
    if plot is not None and "{outcome}" not in plot:
        plot = str(Path(plot).with_suffix("")) + "-{outcome}" + (Path(plot).suffix or ".png")
    return outcome_evaluation(ckpt.model, calibration, OutcomeCutoffs.from_description(calibration), sequences,
                              ckpt.model_config.max_len, config.split, plot, config.device, config.batch_size)


def baseline_tokens(data_dir: str | Path, vocab: Any) -> np.ndarray | None:
    """Content tokens (category, brand, attributes) of every vocabulary item for the
    content baseline; None when the data has neither a catalogue nor item categories."""
    from seqrec_ray.data.catalogue import TokenConfig, category_tokens, load_catalogue, vocab_item_tokens
    from seqrec_ray.schema import FIRST_ID_INDEX

    config = TokenConfig(fields=("category", "brand", "attributes"))
    catalogue = load_catalogue(str(data_dir))
    tokens = vocab_item_tokens(catalogue, vocab.num_items, config)
    raw_categories = [None if c < FIRST_ID_INDEX else vocab.category_raw_ids[c] for c in vocab.item_category]
    tokens = category_tokens(raw_categories, tokens, config)
    return tokens if tokens[FIRST_ID_INDEX:].any() else None


def read_sampled_negatives(path: str | Path, user_ids: pa.ChunkedArray, vocab: Any) -> tuple[torch.Tensor, int]:
    """Fixed negatives per user from ``user neg1 ... negN`` lines (raw ids), in the order
    of ``user_ids``: ((B, N) item indices, how many negatives were out of vocabulary)."""
    by_user: dict[str, list[str]] = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts:
                by_user[parts[0]] = parts[1:]
    users = [str(u) for u in user_ids.to_pylist()]
    missing = [u for u in users if u not in by_user]
    if missing:
        raise ValueError(f"{path}: no negatives for {len(missing)} of {len(users)} users (e.g. {missing[:3]})")
    widths = {len(by_user[u]) for u in users}
    if len(widths) != 1:
        raise ValueError(f"{path}: users have different numbers of negatives {sorted(widths)}")
    idx = np.array([[vocab.item_index(raw) for raw in by_user[u]] for u in users], dtype=np.int64)
    return torch.from_numpy(idx), int((idx < 2).sum())


def format_table(result: dict[str, Any]) -> str:
    """A readable table: one row per scorer, for the full and (if any) sampled sections."""
    lines = [
        f"{result['model']} checkpoint (epoch {result['checkpoint_epoch']}), split={result['split']}, "
        f"history {'masked' if result['mask_history'] else 'not masked'}"
        + (f", new-item boost {result['new_item_boost']:+g}" if result.get("new_item_boost") else "")
    ]
    sections = [(result.get("full"), "full ranking over all items", "")]
    by_target = result.get("by_target") or {}
    if by_target:
        sections += [(by_target["cold"], "full ranking, users whose target has NO training events (cold items)", ""),
                     (by_target["warm"], "full ranking, users whose target has training events (warm items)", "")]
    if result.get("purchase_targets"):
        sections.append((result["purchase_targets"], "full ranking, users whose target is a PURCHASE", ""))
    if "sampled" in result:
        sections.append((result["sampled"], "SAMPLED candidates", "sampled"))
    for rows, title, section in sections:
        first = next(iter(rows.values()))
        keys = [k for k in first if "@" in k]
        extra = f" ({result['sampled_negatives']['per_user']} negatives per user)" if section == "sampled" else ""
        lines.append(f"\n{title}{extra}, users={first['users']}")
        width = max(12, *(len(name) + 1 for name in rows))
        lines.append(" " * width + "".join(f"{k:>12s}" for k in keys))
        for name, metrics in rows.items():
            lines.append(f"{name:{width}s}" + "".join(f"{metrics[k]:12.4f}" for k in keys))
    if result.get("outcomes"):
        from .outcomes import format_outcomes

        lines += format_outcomes(result["outcomes"])
    return "\n".join(lines)

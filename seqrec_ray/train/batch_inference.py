"""Batch recommendation: top-k items for every user of an artifacts directory.

The pure part (``latest_features``, ``top_k_items``, ``Recommender``) turns sequence rows
(docs/contracts.md §2) into ``user_id, items list<string>, scores list<float>`` with a
checkpoint's encoder and its tied item embeddings; it runs the same way in one process
(``recommend_in_process``, the benchmark's baseline) and inside Ray Data
(``run_batch_recommend``: ``map_batches`` over a fixed pool of ``Recommender`` actors,
each loading the checkpoint once).

A user's input is their whole sequence (every split), so the recommendation is for the
next event after the last one featurize saw.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import torch

from seqrec_ray.data.padding import pad_lists
from seqrec_ray.data.vocab import check_same_items
from seqrec_ray.models import scoring
from seqrec_ray.schema import FIRST_ID_INDEX, SEQUENCE_FEATURES, USER_ID

READ_COLUMNS = (USER_ID, *SEQUENCE_FEATURES)
OUTPUT_SCHEMA = pa.schema([(USER_ID, pa.string()), ("items", pa.list_(pa.string())), ("scores", pa.list_(pa.float32()))])
SUMMARY_FILE = "_summary.json"  # leading "_": Parquet readers skip it


@dataclass(frozen=True)
class BatchRecommendConfig:
    data: str = field(metadata={"help": "featurize artifacts directory (reads DATA/sequences and vocab/)"})
    checkpoint: str = field(metadata={"help": "checkpoint directory trained on that data (e.g. OUT/best; docs/contracts.md §3)"})
    output: str = field(metadata={"help": "directory for part-*.parquet and _summary.json (earlier parts are replaced)"})
    k: int = field(default=20, metadata={"help": "items per user"})
    batch_size: int = field(default=512, metadata={"help": "users per encoder call"})
    num_actors: int = field(default=2, metadata={"help": "size of the encoder+ranker actor pool"})
    cpus_per_actor: float = field(default=1.0, metadata={"help": "CPUs per actor, also its torch threads (at least 1)"})
    exclude_seen: bool = field(default=False, metadata={"help": "never recommend an item already in the user's sequence"})

    def __post_init__(self) -> None:
        for name in ("data", "checkpoint", "output"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty path, got {getattr(self, name)!r}")
        for name in ("k", "batch_size", "num_actors"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not (isinstance(self.cpus_per_actor, (int, float)) and self.cpus_per_actor > 0):
            raise ValueError(f"cpus_per_actor must be > 0, got {self.cpus_per_actor!r}")

    def check_paths(self) -> None:
        """Fail before any Ray work when an input is missing; FileNotFoundError names it."""
        for part in ("sequences", "vocab"):
            if not (Path(self.data) / part).is_dir():
                raise FileNotFoundError(f"data {self.data}: no {part}/ directory (not a featurize artifacts directory)")
        if not (Path(self.checkpoint) / "model.json").is_file():
            raise FileNotFoundError(f"checkpoint {self.checkpoint}: no model.json (not a checkpoint directory)")
        out = Path(self.output)
        if out.exists() and not out.is_dir():
            raise FileExistsError(f"output {self.output} exists and is not a directory")
        if out.is_dir() and any(out.iterdir()) and not (out / SUMMARY_FILE).exists():
            raise FileExistsError(f"output {self.output} is a non-empty directory not written by a batch job; "
                                  "give an empty or new directory")
        check_same_items(self.data, self.checkpoint)


# ----------------------------------------------------------------------------- pure parts


def latest_features(sequences: pa.Table, max_len: int) -> dict[str, np.ndarray]:
    """Each user's last ``max_len`` events as (B, T) int64 arrays, LEFT-padded with 0.

    T is the longest kept sequence in the batch (at least 1), so short batches stay narrow.
    """
    return {name: pad_lists(sequences.column(name), "left", max_len) for name in SEQUENCE_FEATURES}


def seen_items(sequences: pa.Table) -> np.ndarray:
    """Every item of each user's whole sequence (not just the encoder's window): (B, L) int64, 0-padded."""
    return pad_lists(sequences.column("items"), "right")


@torch.no_grad()
def top_k_items(
    model: torch.nn.Module,
    features: dict[str, torch.Tensor],
    item_embeddings: torch.Tensor,
    k: int,
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ``k`` item indices per user, best first: (B, k') scores and indices.

    k' = min(k, real items). Pad, oov and the ``exclude`` (B, L) int64 item indices (0 =
    padding) are masked to -inf: when fewer than k' items remain, masked entries fill the
    rest with score -inf, and callers drop them (``to_raw_lists`` does).
    """
    scores = scoring.catalogue_scores(model.encode(features), item_embeddings)  # (B, V)
    scores = scoring.mask_items(scoring.mask_unrankable(scores), exclude)
    return scoring.top_k(scores, min(k, scores.shape[1] - FIRST_ID_INDEX))  # (B, k') values, indices


def to_raw_lists(values: np.ndarray, indices: np.ndarray, item_raw_ids: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """(B, k) scores and indices -> list<string> raw ids and list<float> scores, -inf dropped."""
    keep = np.isfinite(values)  # (B, k)
    offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32)
    items = pa.ListArray.from_arrays(offsets, pa.array(item_raw_ids[indices[keep]], type=pa.string()))
    scores = pa.ListArray.from_arrays(offsets, pa.array(values[keep].astype(np.float32), type=pa.float32()))
    return items, scores


class Recommender:
    """Encoder + ranker for one process or one Ray Data actor: loads the checkpoint once."""

    def __init__(self, checkpoint: str, k: int, exclude_seen: bool = False, torch_threads: int | None = None) -> None:
        from .checkpoint import load_checkpoint

        if torch_threads:
            torch.set_num_threads(torch_threads)
        loaded = load_checkpoint(checkpoint)
        self.model, self.max_len = loaded.model, loaded.model_config.max_len
        self.item_embeddings = loaded.model.item_embeddings().detach().float()  # (V, D)
        self.item_raw_ids = np.asarray(loaded.vocab.item_raw_ids, dtype=object)
        self.k, self.exclude_seen = k, exclude_seen

    def __call__(self, batch: pa.Table) -> pa.Table:
        features = {k: torch.from_numpy(v) for k, v in latest_features(batch, self.max_len).items()}
        exclude = torch.from_numpy(seen_items(batch)) if self.exclude_seen else None
        values, indices = top_k_items(self.model, features, self.item_embeddings, self.k, exclude)
        items, scores = to_raw_lists(values.numpy(), indices.numpy(), self.item_raw_ids)
        user_ids = batch.column(USER_ID).combine_chunks().cast(pa.string())
        return pa.Table.from_arrays([user_ids, items, scores], schema=OUTPUT_SCHEMA)


# ------------------------------------------------------------------------ the two drivers


def iter_sequence_batches(data: str, batch_size: int) -> Iterator[pa.Table]:
    """DATA/sequences in ``batch_size``-user tables, only the columns inference reads."""
    dataset = pads.dataset(str(Path(data) / "sequences"), format="parquet")
    for record_batch in dataset.to_batches(columns=list(READ_COLUMNS), batch_size=batch_size):
        if record_batch.num_rows:
            yield pa.Table.from_batches([record_batch])


def recommend_in_process(config: BatchRecommendConfig, torch_threads: int = 1) -> pa.Table:
    """The same encoder+ranker loop in this process, no Ray: all users' recommendations."""
    config.check_paths()
    recommender = Recommender(config.checkpoint, config.k, config.exclude_seen, torch_threads)
    parts = [recommender(batch) for batch in iter_sequence_batches(config.data, config.batch_size)]
    return pa.concat_tables(parts) if parts else OUTPUT_SCHEMA.empty_table()


def run_batch_recommend(config: BatchRecommendConfig, log: Callable[[str], None] = print) -> dict:
    """Ray Data: read sequences, ``map_batches`` over ``num_actors`` Recommender actors,
    write Parquet to ``config.output``; returns (and writes) a summary. Needs a running Ray."""
    config.check_paths()
    log(f"[batch_recommend] {config.num_actors} actors x {config.cpus_per_actor} CPU, k={config.k} -> {config.output}")
    summary = run_actor_pool(
        config, Recommender, READ_COLUMNS,
        {"checkpoint": str(Path(config.checkpoint).resolve()), "k": config.k, "exclude_seen": config.exclude_seen,
         "torch_threads": max(1, int(config.cpus_per_actor))})
    log(f"[batch_recommend] {summary['users']} users in {summary['seconds']:.1f}s ({summary['users_per_s']} users/s)")
    return summary


def run_actor_pool(config: Any, actor: type, columns: tuple[str, ...], actor_kwargs: dict,
                   summary_extra: dict | None = None) -> dict:
    """The Ray Data driver of the batch jobs: read ``columns`` of DATA/sequences, run
    ``map_batches`` over a fixed pool of ``actor`` (each built once with ``actor_kwargs``),
    write Parquet to ``config.output`` (earlier parts replaced) and a summary beside it
    (the config, users, time, and ``summary_extra``). ``config`` holds data, output,
    batch_size, num_actors and cpus_per_actor."""
    import ray

    _clear_previous_output(Path(config.output))
    started = time.perf_counter()
    ds = ray.data.read_parquet(str(Path(config.data) / "sequences"), columns=list(columns))
    # A featurize part can hold far more users than a batch; streaming repartition cuts
    # batch-sized blocks so every actor of the pool gets work, without a shuffle barrier.
    ds = ds.repartition(target_num_rows_per_block=config.batch_size)
    scored = ds.map_batches(
        actor,
        fn_constructor_kwargs=actor_kwargs,
        batch_size=config.batch_size,
        batch_format="pyarrow",
        concurrency=config.num_actors,  # a fixed-size actor pool: each actor loads the model once
        num_cpus=config.cpus_per_actor,
    )
    scored.write_parquet(config.output)
    seconds = time.perf_counter() - started
    users = pads.dataset(config.output, format="parquet").count_rows()
    summary = {**asdict(config), "users": users, "seconds": round(seconds, 3),
               "users_per_s": round(users / seconds, 1) if seconds > 0 else None, **(summary_extra or {})}
    (Path(config.output) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def _clear_previous_output(out: Path) -> None:
    """Remove only what an earlier batch recommend wrote here (its Parquet parts and summary)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(out):
        if name.endswith(".parquet") or name == SUMMARY_FILE:
            (out / name).unlink()

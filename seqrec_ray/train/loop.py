"""The pure training / evaluation steps and the in-process (no Ray) training loop.

The Ray Train wrapper (ray_trainer.py) calls build_task / train_epoch / evaluate on
each worker; ``run_in_process`` runs the same steps in one process.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from seqrec_ray.models import build_encoder, scoring
from seqrec_ray.models.losses import FullSoftmaxTask, SampledSoftmaxTask, proposal_distribution

from .batches import trim_left_padding
from .checkpoint import save_checkpoint, unwrap_encoder
from .config import TrainConfig
from .content import ItemContentInputs, init_from_checkpoint, install_item_content, load_item_content
from .metrics import DEFAULT_KS, RankingMetrics, evaluate_scores
from .outcomes import outcome_loss_sum
from .progress import epoch_line
from .queries import QueryInputs, install_queries, load_query_inputs
from .run_state import SELECTION, EarlyStopping, scored

__all__ = ["TrainConfig", "build_task", "train_epoch", "evaluate", "run_in_process"]


def build_task(
    config: TrainConfig, vocab_sizes: dict, item_counts: np.ndarray | None = None, rank: int = 0,
    content: ItemContentInputs | None = None, init_from_items: tuple[str, ...] | None = None,
    queries: QueryInputs | None = None,
) -> torch.nn.Module:
    """The loss wrapper (``.encoder`` inside) for a vocabulary; seeded by config.seed + rank.

    ``content`` (load_item_content): the items' content tokens, for a model with item
    content. ``init_from_items``: the data's item raw ids, needed with ``config.init_from``
    (the older checkpoint's weights are copied into the grown tables). ``queries``
    (load_query_inputs): the log's queries, for the query-aware model."""
    torch.manual_seed(config.seed + rank)
    encoder = build_encoder(config.encoder_config(vocab_sizes, content.fields if content else (),
                                                  content.buckets if content else None,
                                                  queries.buckets if queries else 0))
    if content is not None:
        install_item_content(encoder, content)
    if queries is not None:
        install_queries(encoder, queries.texts, queries.hashes)
    if config.init_from:
        if init_from_items is None:
            raise ValueError("init_from needs the data's item vocabulary (init_from_items)")
        init_from_checkpoint(encoder, config.init_from, init_from_items)
    content_weight = config.content_loss if encoder.config.uses_content else 0.0
    if config.loss == "full":
        return FullSoftmaxTask(encoder, mask_history=config.mask_history_in_loss, content_weight=content_weight,
                               query_weight=config.query_loss, purchase_weight=config.purchase_loss,
                               type_weight=config.type_loss, outcome_weight=config.outcome_loss)
    counts = None if item_counts is None else torch.as_tensor(np.asarray(item_counts))
    proposal = proposal_distribution(encoder.config.num_items, config.negative_sampler, counts)
    return SampledSoftmaxTask(encoder, proposal, config.num_negatives, seed=config.seed + 1000 * (rank + 1),
                              content_weight=content_weight, query_weight=config.query_loss,
                              purchase_weight=config.purchase_loss, type_weight=config.type_loss,
                              outcome_weight=config.outcome_loss)


def train_epoch(
    task: torch.nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    autocast_dtype: torch.dtype | None = None,
    grad_clip: float | None = None,
) -> dict:
    """One pass over ``batches``: {loss (mean per target position), positions, seconds, positions_per_s}."""
    device = torch.device(device)
    task.train()
    total_loss, positions, start = 0.0, 0, time.perf_counter()
    for batch in batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        n = int((batch["targets"] >= 2).sum())
        with _autocast(device, autocast_dtype):
            loss = task(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(task.parameters(), grad_clip)
        optimizer.step()
        total_loss += float(loss.detach()) * n
        positions += n
    seconds = time.perf_counter() - start
    return {
        "loss": total_loss / positions if positions else float("nan"),
        "positions": positions,
        "seconds": seconds,
        "positions_per_s": positions / seconds if seconds > 0 else 0.0,
    }


def evaluate(
    encoder: torch.nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    ks: tuple[int, ...] = DEFAULT_KS,
    mask_history: bool = True,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    negatives_key: str | None = None,
    item_boost: torch.Tensor | None = None,
    purchase_head: bool = False,
) -> RankingMetrics:
    """Full-ranking metrics of ``encoder`` (bare or wrapped) on eval-example batches;
    ``item_boost`` ((V,), ``scoring.new_item_boost``) is added to every row of scores;
    ``purchase_head``: rank with the next-purchase head instead of the next-item vector."""
    encoder = unwrap_encoder(encoder)
    was_training = encoder.training
    encoder.eval()
    device = torch.device(device)

    scores = encoder.score_purchase if purchase_head else encoder.score

    def score(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with _autocast(device, autocast_dtype):
            return scoring.boost_items(scores(trim_left_padding(batch)).float(), item_boost)  # (B, V)

    try:
        return evaluate_scores(score, batches, encoder.config.num_items, ks, mask_history, device, negatives_key)
    finally:
        encoder.train(was_training)


def _item_raw_ids(data_dir: str | Path) -> tuple[str, ...]:
    from seqrec_ray.data.vocab import load_vocab

    return load_vocab(str(data_dir)).item_raw_ids


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def run_in_process(config: TrainConfig, data_dir: str | Path, output_dir: str | Path, progress: bool = True) -> dict:
    """Train in this process (no Ray), like the Ray path: a checkpoint every epoch
    (``latest/``), the best one by valid NDCG@10 (``best/``), curves, and the best
    checkpoint's test metrics. Returns (and writes to ``result.json``) a summary."""
    from .curves import save_curves
    from .data import load_training_data
    from .export import finish_run  # export scores the best checkpoint with evaluate (above)

    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    from seqrec_ray.data.artifacts import load_manifest

    output_dir = Path(output_dir)
    cutoffs = config.outcome_cutoffs(load_manifest(data_dir))  # fails here when the split has no clock
    queries = load_query_inputs(config, data_dir)
    data = load_training_data(data_dir, config.max_len, with_queries=queries is not None,
                              behaviour_targets=config.behaviour_heads, outcome_cutoffs=cutoffs)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast = torch.bfloat16 if device.type == "cuda" else None  # bf16 on GPU only
    content = load_item_content(config, data_dir, data.item_counts)
    task = build_task(config, data.vocab_sizes, data.item_counts, content=content,
                      init_from_items=_item_raw_ids(data_dir) if config.init_from else None,
                      queries=queries).to(device)
    optimizer = torch.optim.Adam(task.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    stopper, history, started = EarlyStopping(config.patience), [], time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        batches = data.train_batches(config.batch_size, seed=config.seed * 1_000_003 + epoch)  # + user-level examples
        stats = train_epoch(task, batches, optimizer, device, autocast, config.grad_clip)
        valid = evaluate(task, data.eval_batches("valid", config.eval_batch_size), config.ks, True, device, autocast)
        valid = scored(valid.to_dict(), *outcome_loss_sum(task, data.outcomes_valid, config.eval_batch_size, device))
        record = {"epoch": epoch, **stats, "elapsed_s": time.perf_counter() - started, "valid": valid}
        history.append(record)
        meta = {"epoch": epoch, "metrics": {"loss": stats["loss"], "valid": record["valid"]}}
        save_checkpoint(output_dir / "latest", task, config, data_dir, meta, optimizer)
        if stopper.update(valid[SELECTION], epoch):
            shutil.copytree(output_dir / "latest", output_dir / "best", dirs_exist_ok=True)
        save_curves(history, output_dir)
        if progress:
            print(epoch_line(record, stopper.best_epoch), flush=True)
        if stopper.should_stop:
            break
    return finish_run(output_dir, config, history, stopper.best_epoch, data.eval_tensors("test"),
                      device=device, autocast_dtype=autocast, data_dir=Path(data_dir))

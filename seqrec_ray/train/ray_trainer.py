"""Data-parallel training on Ray Train: the one thin TorchTrainer wiring file.

The model, loss, epoch step, metrics and checkpoint format are the pure pieces in
loop.py / examples.py / checkpoint.py, the run state (early stopping, train_state.json)
is run_state.py, the export of a finished run is export.py and a worker's batching of
its shards is shards.py; this file only

- turns the artifacts' sequences into Ray Data datasets (training windows, valid examples)
  that reach workers as shards (``get_dataset_shard``), never as files each worker reads;
- wraps the task in DDP (``prepare_model``), seeds every (rank, epoch) explicitly;
- merges per-rank metric sums so every valid user is counted exactly once;
- reports a contract-§3 checkpoint from rank 0 every epoch and restores from
  ``ray.train.get_checkpoint()`` (Ray Train V2: re-creating the trainer with the same
  ``RunConfig(name, storage_path)`` resumes the run; ``FailureConfig`` restarts crashed
  workers from the latest checkpoint the controller committed, which is at most one
  epoch behind because each report first waits for the previous one's commit).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from ray.train import (
    Checkpoint,
    CheckpointConfig,
    CheckpointConsistencyMode,
    DataConfig,
    FailureConfig,
    RunConfig,
    ScalingConfig,
)

from .checkpoint import save_checkpoint
from .config import TrainConfig
from .examples import eval_examples, training_windows
from .export import export_run
from .loop import build_task, evaluate, train_epoch
from .metrics import RankingMetrics
from .outcomes import OutcomeCutoffs, outcome_examples_for_ray, outcome_loss_sum
from .progress import epoch_line
from .queries import load_query_inputs
from .run_state import (
    SELECTION,
    EarlyStopping,
    RunState,
    optimizer_step,
    restore_run_state,
    scored,
    write_train_state,
)
from .shards import ShardBatches

BEST_METRIC = f"valid_{SELECTION}"  # the reported metric checkpoints are ranked by (run_state.selection_score)
EVAL_DATASETS = ("valid", "outcomes_valid")


@dataclass(frozen=True)
class RayTrainConfig:
    """How the run is laid out on Ray; what is trained is TrainConfig."""

    num_workers: int = dataclasses.field(default=2, metadata={"help": "Ray Train workers (DDP ranks)"})
    use_gpu: bool = dataclasses.field(default=False, metadata={"help": "one GPU per worker, bf16 autocast"})
    cpus_per_worker: float = 1.0
    run_name: str | None = dataclasses.field(default=None, metadata={"help": (
        "Ray Train run name; the same name and storage resume the run "
        "(default: derived from the data and the training config)")})
    storage_path: str | None = dataclasses.field(default=None, metadata={"help": (
        "Ray Train storage path, shared storage on clusters (default: Ray's, ~/ray_results)")})
    max_failures: int = dataclasses.field(default=0, metadata={"help": (
        "worker-group restarts from the latest checkpoint before giving up; -1 = retry forever")})
    num_to_keep: int = dataclasses.field(default=2, metadata={"help": (
        "checkpoints kept by valid NDCG@10 (the latest is always kept too)")})
    cache_windows: bool = dataclasses.field(default=True, metadata={"help": (
        "materialize training windows once instead of re-windowing every epoch")})
    # In memory, every epoch is a fresh in-memory shuffle of the shard's tensors: no
    # per-epoch streaming, collation or shuffle buffer.
    shard_cache_mib: float = dataclasses.field(default=2048.0, metadata={"help": (
        "workers keep their data shard in memory when it is at most this big (MiB); "
        "0 = stream it from Ray Data every epoch")})

    def __post_init__(self) -> None:
        if not isinstance(self.num_workers, int) or self.num_workers < 1:
            raise ValueError(f"num_workers must be a positive int, got {self.num_workers!r}")
        if not self.cpus_per_worker > 0:
            raise ValueError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker!r}")
        if not isinstance(self.max_failures, int) or self.max_failures < -1:
            raise ValueError(f"max_failures must be an int >= -1 (-1 = retry forever), got {self.max_failures!r}")
        if not self.shard_cache_mib >= 0:
            raise ValueError(f"shard_cache_mib must be >= 0 (0 = always stream), got {self.shard_cache_mib!r}")
        if not isinstance(self.num_to_keep, int) or self.num_to_keep < 1:
            raise ValueError(f"num_to_keep must be a positive int, got {self.num_to_keep!r}")
        if self.run_name is not None and (not self.run_name or "/" in self.run_name):
            raise ValueError(f"run_name must be a non-empty name without '/', got {self.run_name!r}")


def default_run_name(config: TrainConfig, data_dir: str | Path) -> str:
    """``seqrec-<model>-<hash>``: the same data and config (epochs aside) give the same name,
    so re-running a command resumes it, and a changed config starts a new run."""
    knobs = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("epochs", "run_name")}
    key = json.dumps([str(Path(data_dir).resolve()), knobs], sort_keys=True, default=str)
    return f"seqrec-{config.model}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def build_datasets(data_dir: str | Path, max_len: int, cache: bool = True,
                   with_queries: bool = False, behaviour_targets: bool = False,
                   outcome_cutoffs: OutcomeCutoffs | None = None) -> dict[str, ray.data.Dataset]:
    """``train`` (training windows) and ``valid`` (eval examples) from DIR/sequences; with
    the events' query hashes for the query-aware model (``with_queries``), the
    next-purchase / next-type targets of the behaviour heads (``behaviour_targets``), and
    ``outcomes``, the user-level train examples of the propensity / churn heads
    (``outcome_cutoffs``)."""
    from seqrec_ray.data.sequences import SEQUENCE_SCHEMA

    columns = [n for n in SEQUENCE_SCHEMA.names if with_queries or n != "queries"]
    sequences = ray.data.read_parquet(str(Path(data_dir) / "sequences"), columns=columns)
    datasets = {
        "train": sequences.map_batches(training_windows, batch_format="pyarrow",
                                       fn_kwargs={"max_len": max_len, "behaviour_targets": behaviour_targets}),
        "valid": sequences.map_batches(
            eval_examples, batch_format="pyarrow", fn_kwargs={"split": "valid", "max_len": max_len}
        ),
    }
    if outcome_cutoffs is not None:
        for name, split in (("outcomes", "train"), ("outcomes_valid", "valid")):
            datasets[name] = sequences.map_batches(outcome_examples_for_ray, batch_format="pyarrow", fn_kwargs={
                "cutoffs": outcome_cutoffs, "max_len": max_len, "split": split})
    return {name: ds.materialize() for name, ds in datasets.items()} if cache else datasets


class ShardConfig(DataConfig):
    """Train shards are equal (DDP needs the same number of steps on every rank; at most
    num_workers - 1 windows are dropped per epoch); eval shards drop nothing, so every
    valid user is scored on exactly one rank."""

    def __init__(self, eval_names: tuple[str, ...] = EVAL_DATASETS) -> None:
        super().__init__(datasets_to_split="all")
        self.eval_names = tuple(eval_names)

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        train = {k: v for k, v in datasets.items() if k not in self.eval_names}
        output = super().configure(train, world_size, worker_handles, worker_node_ids, **kwargs)
        for name in self.eval_names:
            if name not in datasets:
                continue
            ds = datasets[name].copy(datasets[name])
            ds.set_name(name)
            ds.context.execution_options = self._resolve_execution_options(name)
            for i, split in enumerate(ds.streaming_split(world_size, equal=False)):
                output[i][name] = split
        return output


def fit(
    config: TrainConfig,
    ray_config: RayTrainConfig,
    data_dir: str | Path,
    output_dir: str | Path,
    progress: bool = True,
) -> dict:
    """Train on Ray Train, then export the best checkpoint (by valid NDCG@10) to
    OUTPUT/best, the latest to OUTPUT/latest, curves and ``result.json`` to OUTPUT."""
    from seqrec_ray.data.artifacts import load_manifest
    from seqrec_ray.data.vocab import load_vocab

    data_dir, output_dir = Path(data_dir).resolve(), Path(output_dir).resolve()
    manifest = load_manifest(data_dir)
    run_name = ray_config.run_name or default_run_name(config, data_dir)
    config = dataclasses.replace(config, run_name=run_name)
    cutoffs = config.outcome_cutoffs(manifest)  # fails here when the split has no clock
    queries = load_query_inputs(config, data_dir)
    datasets = build_datasets(data_dir, config.max_len, ray_config.cache_windows, with_queries=queries is not None,
                              behaviour_targets=config.behaviour_heads, outcome_cutoffs=cutoffs)
    loop_config = {
        "queries": queries,
        "train_config": config,
        "cache_shards": _shards_fit_in_memory(datasets, ray_config),
        "vocab_sizes": dict(manifest["vocab_sizes"]),
        "item_counts": _item_counts(config, data_dir, manifest),
        "item_content": _item_content(config, data_dir, manifest),
        "init_from_items": load_vocab(str(data_dir)).item_raw_ids if config.init_from else None,
        "artifacts_dir": str(data_dir),
        "torch_threads": config.torch_threads or max(1, int(ray_config.cpus_per_worker)),
        "progress": progress,
    }
    trainer = ray.train.torch.TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=_scaling_config(ray_config),
        run_config=RunConfig(
            name=run_name,
            storage_path=ray_config.storage_path,
            failure_config=FailureConfig(max_failures=ray_config.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=ray_config.num_to_keep, checkpoint_score_attribute=BEST_METRIC, checkpoint_score_order="max"
            ),
        ),
        datasets=datasets,
        dataset_config=ShardConfig(),
    )
    if progress:
        print(f"[train] run {run_name!r} in {trainer.run_config.storage_path} "
              f"({ray_config.num_workers} workers{', GPU' if ray_config.use_gpu else ''})", flush=True)
    result = trainer.fit()
    return _export(result, config, data_dir, output_dir, progress)


def _shards_fit_in_memory(datasets: dict[str, ray.data.Dataset], ray_config: RayTrainConfig) -> bool:
    """True when every worker's share of the (materialized) datasets fits shard_cache_mib."""
    if not ray_config.cache_windows or ray_config.shard_cache_mib <= 0:
        return False  # lazy datasets: their size is unknown until they run
    total = sum(ds.size_bytes() for ds in datasets.values())
    return total / ray_config.num_workers <= ray_config.shard_cache_mib * 2**20


def _scaling_config(ray_config: RayTrainConfig) -> ScalingConfig:
    resources = {"CPU": ray_config.cpus_per_worker}
    if ray_config.use_gpu:
        resources["GPU"] = 1
    return ScalingConfig(
        num_workers=ray_config.num_workers, use_gpu=ray_config.use_gpu, resources_per_worker=resources
    )


def _item_counts(config: TrainConfig, data_dir: Path, manifest: dict, needed: bool = False) -> np.ndarray | None:
    """Train-split item counts, read on the driver only when popularity negatives (or item
    content, ``needed``) need them."""
    if not needed and (config.loss != "sampled" or config.negative_sampler != "popularity"):
        return None
    import pyarrow.dataset as pads

    from .baselines import train_item_counts

    table = pads.dataset(str(data_dir / "sequences"), format="parquet").to_table(columns=["items", "splits"])
    return train_item_counts(table, int(manifest["vocab_sizes"]["items"]))


def _item_content(config: TrainConfig, data_dir: Path, manifest: dict):
    """The content inputs (tokens, which items have IDs), built once on the driver."""
    from .content import has_catalogue, load_item_content

    if not config.content_fields(has_catalogue(data_dir)):
        return None
    return load_item_content(config, data_dir, _item_counts(config, data_dir, manifest, needed=True))


def _export(result: ray.train.Result, config: TrainConfig, data_dir: Path, output_dir: Path, progress: bool) -> dict:
    """Raise the run's error, else export its best (by valid NDCG@10) and latest checkpoints."""
    if result.error is not None:
        raise result.error
    if result.checkpoint is None:
        raise RuntimeError(f"run {config.run_name!r} reported no checkpoint")
    best = result.get_best_checkpoint(BEST_METRIC, "max") or result.checkpoint
    return export_run(best, result.checkpoint, result.path, config, data_dir, output_dir, progress)


# ---------------------------------------------------------------------------- workers


def train_loop_per_worker(loop_config: dict) -> None:
    """Every worker: restore, then per epoch train on its shard, evaluate its valid shard,
    merge metrics across ranks, and report (rank 0 with the checkpoint)."""
    config: TrainConfig = loop_config["train_config"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(loop_config["torch_threads"])
    device = ray.train.torch.get_device()
    autocast = torch.bfloat16 if device.type == "cuda" else None  # bf16 on GPU only
    # Same seed on every rank: identical initial weights (DDP would broadcast rank 0's anyway).
    task = build_task(config, loop_config["vocab_sizes"], loop_config["item_counts"], rank=0,
                      content=loop_config.get("item_content"), init_from_items=loop_config.get("init_from_items"),
                      queries=loop_config.get("queries"))
    run = _restore(task, ray.train.get_checkpoint(), config.patience)
    model = ray.train.torch.prepare_model(task)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    resumed = {"resumed_from_epoch": run.epoch, "restored_digest": run.digest}
    if run.optimizer_state is not None:
        optimizer.load_state_dict(run.optimizer_state)
        resumed["restored_optimizer_step"] = optimizer_step(optimizer)
    stopper, history = run.stopper, run.history
    started = time.perf_counter() - (history[-1]["elapsed_s"] if history else 0.0)
    shards = ShardBatches(config, loop_config["cache_shards"])
    for epoch in range(run.epoch + 1, config.epochs + 1):
        if stopper.should_stop:
            break
        seed = _epoch_seed(config.seed, rank, epoch)
        _seed_epoch(model, seed)
        stats = train_epoch(model, shards.train(seed), optimizer, device, autocast, config.grad_clip)
        valid = evaluate(model, shards.valid(), config.ks, True, device, autocast)
        stats["outcome_loss_sum"], stats["outcome_examples"] = outcome_loss_sum(
            model, shards.outcomes_valid(), config.eval_batch_size, device)
        stats, valid, outcome = _merge_across_ranks(stats, valid, world)
        record = {"epoch": epoch, **stats, "elapsed_s": time.perf_counter() - started,
                  "valid": scored(valid.to_dict(), *outcome)}
        history.append(record)
        stopper.update(record["valid"][SELECTION], epoch)
        _report(model, optimizer, config, loop_config, rank, world, history, stopper, resumed)
        if rank == 0 and loop_config["progress"]:
            # Not print(): Ray Train's print patch echoes every line twice to the driver.
            sys.stdout.write(epoch_line(record, stopper.best_epoch, world) + "\n")
            sys.stdout.flush()


def _epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """A seed per (run seed, rank, epoch): a resumed epoch draws the same randomness."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0])


def _seed_epoch(model: torch.nn.Module, epoch_seed: int) -> None:
    """Dropout (global torch RNG) and negative sampling (the task's own generator)."""
    torch.manual_seed(epoch_seed)
    task = getattr(model, "module", model)
    if isinstance(getattr(task, "generator", None), torch.Generator):
        task.generator.manual_seed(epoch_seed + 1)


def _restore(task: torch.nn.Module, checkpoint: Checkpoint | None, patience: int) -> RunState:
    """The run state of the latest reported checkpoint, its weights loaded into ``task``."""
    if checkpoint is None:
        return RunState.fresh(patience)
    with checkpoint.as_directory() as path:
        return restore_run_state(task, path, patience)


def _merge_across_ranks(stats: dict, valid: RankingMetrics, world: int) -> tuple[dict, RankingMetrics, tuple]:
    """Global train stats and valid metrics: metric sums and user counts add up across
    ranks (each valid user lives on exactly one shard), the loss is position-weighted;
    and the heads' valid (log-loss sum, examples), summed the same way."""
    parts = [(stats, valid)]
    if world > 1 and dist.is_initialized():
        parts = [None] * world
        dist.all_gather_object(parts, (stats, valid))
    merged = parts[0][1]
    for _, other in parts[1:]:
        merged = merged.merge(other)
    positions = sum(s["positions"] for s, _ in parts)
    loss_sum = sum(s["loss"] * s["positions"] for s, _ in parts if s["positions"])
    seconds = max(s["seconds"] for s, _ in parts)  # the epoch ends when the slowest rank does
    outcome = (sum(s.get("outcome_loss_sum", 0.0) for s, _ in parts), sum(s.get("outcome_examples", 0) for s, _ in parts))
    return {
        "loss": loss_sum / positions if positions else float("nan"),
        "positions": positions,
        "seconds": seconds,
        "positions_per_s": positions / seconds if seconds > 0 else 0.0,
    }, merged, outcome


def _report(model, optimizer, config: TrainConfig, loop_config: dict, rank: int, world: int,
            history: list[dict], stopper: EarlyStopping, resumed: dict) -> None:
    """Every rank reports the epoch's metrics (a barrier); rank 0 attaches the checkpoint:
    the contract-§3 directory plus optimizer.pt and the run state for resuming."""
    record = history[-1]
    metrics = {k: v for k, v in record.items() if k not in ("valid", "elapsed_s")}
    metrics.update({f"valid_{k}": v for k, v in record["valid"].items() if isinstance(v, (int, float))})
    metrics.update({k: v for k, v in resumed.items() if v is not None})
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            meta = {"epoch": record["epoch"], "metrics": {"loss": record["loss"], "valid": record["valid"]},
                    "num_workers": world}
            save_checkpoint(tmp, model, config, loop_config["artifacts_dir"], meta, optimizer)
            write_train_state(tmp, history, stopper)
            checkpoint = Checkpoint.from_directory(tmp)
        _wait_for_previous_commit()
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"epoch_{record['epoch']:04d}")


def _wait_for_previous_commit() -> None:
    """Block until the controller has committed every report this worker made so far.

    ``ray.train.report`` returns once the report is queued; the controller registers a
    checkpoint only when a health-check poll (every 2 s) has the report from every rank.
    With short epochs the workers ran up to two reports ahead, so a worker killed right
    after uploading epoch N could leave nothing registered and FailureConfig restarted
    from scratch. Waiting here (before the next upload, so it overlaps the epoch just
    trained) bounds the loss to the epoch in flight: while epoch N uploads, N-1 is committed.
    """
    ray.train.get_all_reported_checkpoints(consistency_mode=CheckpointConsistencyMode.COMMITTED)

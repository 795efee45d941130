"""Training benchmark: Ray Train overhead and LSTM throughput, measured in one run.

    python bench/train.py --data DIR            # featurized Beauty (or any artifacts dir)
    python bench/train.py                       # generated data when no --data is given
    python bench/train.py --data DIR --no-ray   # GPU box: in-process parts only, peak GPU memory

1. Epoch time of ONE Ray Train worker (Ray Data shard, DDP wrapper, per-epoch report and
   checkpoint) vs the same model, data and thread count in the plain in-process loop
   (``run_in_process``): ratio of median train-epoch seconds, first epoch excluded as
   warm-up; the goal is <= 1.05x. Whole-epoch wall time (train + valid + checkpoint) too.
2. LSTM training throughput in target positions/s with full softmax and with sampled
   softmax (1,024 negatives), in-process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class BenchConfig:
    data: str | None = None  # artifacts dir; None = generate
    epochs: int = 4  # per measurement, the first is warm-up
    # Torch threads in-process = CPUs of the one Ray worker. 1 matches Ray Train's default
    # worker shape; on a 2-core box, 2 threads leave no core for Ray's own processes.
    threads: int = 1
    batch_size: int = 256
    num_negatives: int = 1024
    no_ray: bool = False
    gen_users: int = 2000
    gen_items: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.data is not None and not (Path(self.data) / "manifest.json").is_file():
            raise ValueError(f"--data {self.data}: not a featurize artifacts directory (no manifest.json)")
        for name in ("epochs", "threads", "batch_size", "num_negatives", "gen_users", "gen_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.epochs < 2:
            raise ValueError(f"epochs must be >= 2 (the first is warm-up), got {self.epochs}")


def generate_artifacts(out: Path, users: int, items: int, seed: int) -> Path:
    """Zipf-popular items in random sequences (5-60 events per user), featurized in-process
    into a real artifacts directory (leave-one-out split)."""
    import numpy as np
    import pyarrow as pa

    from seqrec_ray import schema as S
    from seqrec_ray.data.pipeline import featurize_in_process

    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 61, size=users)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    n = int(lengths.sum())
    item = rng.choice(items, size=n, p=popularity / popularity.sum())
    user = np.repeat(np.arange(users), lengths)
    position = np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    events = pa.table({
        S.USER_ID: pa.array([f"u{u}" for u in user]),
        S.ITEM_ID: pa.array([f"i{i}" for i in item]),
        S.EVENT_TYPE: pa.array([S.EVENT_TYPES[t] for t in rng.integers(0, 5, n)]),
        S.TIMESTAMP: pa.array(1.7e9 + user * 1e6 + position * 1500.0),  # gap bucket 12
        S.SESSION_ID: pa.nulls(n, pa.string()),
        S.CATEGORY_ID: pa.array([f"c{i % 20}" for i in item]),
        S.PRICE: pa.nulls(n, pa.float64()),
        S.QUERY: pa.nulls(n, pa.string()),
    }, schema=S.EVENT_SCHEMA)
    featurize_in_process(events, str(out))
    return out


def median_after_warmup(values: list[float]) -> float:
    return statistics.median(values[1:])


def epoch_times(history: list[dict]) -> tuple[list[float], list[float]]:
    """(train seconds, whole-epoch wall seconds incl. validation and checkpoint) per epoch."""
    walls = [h["elapsed_s"] - (history[i - 1]["elapsed_s"] if i else 0.0) for i, h in enumerate(history)]
    return [h["seconds"] for h in history], walls


def bench_ray_vs_in_process(train_config, data: Path, work: Path, threads: int) -> dict:
    """In-process, then one Ray worker, then in-process again: on a shared machine the load
    drifts, so the in-process baseline brackets the Ray run in time."""
    from seqrec_ray.ray_env import init_ray
    from seqrec_ray.train.loop import run_in_process
    from seqrec_ray.train.ray_trainer import RayTrainConfig, fit

    config = replace(train_config, torch_threads=threads, patience=0)

    def in_process(name: str) -> tuple[list[float], list[float]]:
        run_in_process(config, data, work / name, progress=False)
        return epoch_times(json.loads((work / name / "curves.json").read_text()))

    before = in_process("in_process_before")
    init_ray(address="local", num_cpus=threads + 2, log_to_driver=False)
    ray_config = RayTrainConfig(num_workers=1, cpus_per_worker=threads, run_name="bench",
                                storage_path=str(work / "ray_runs"))
    fit(config, ray_config, data, work / "ray", progress=False)
    ray_train, ray_wall = epoch_times(json.loads((work / "ray" / "curves.json").read_text()))
    after = in_process("in_process_after")
    local_train, local_wall = before[0][1:] + after[0][1:], before[1][1:] + after[1][1:]  # warm-ups dropped
    return {
        "in_process_train_s": [before[0], after[0]], "ray_train_s": ray_train,
        "in_process_epoch_wall_s": [before[1], after[1]], "ray_epoch_wall_s": ray_wall,
        "train_ratio_median": median_after_warmup(ray_train) / statistics.median(local_train),
        "train_ratio_min": min(ray_train[1:]) / min(local_train),
        "wall_ratio_median": median_after_warmup(ray_wall) / statistics.median(local_wall),
    }


def bench_throughput(train_config, data: Path, threads: int) -> dict:
    """positions/s of the LSTM with full and sampled softmax, in this process."""
    import torch

    from seqrec_ray.train.data import load_training_data
    from seqrec_ray.train.loop import build_task, train_epoch

    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast = torch.bfloat16 if device.type == "cuda" else None
    loaded = load_training_data(data, train_config.max_len)
    out = {"device": str(device), "threads": threads}
    for loss in ("full", "sampled"):
        config = replace(train_config, model="lstm", loss=loss)
        task = build_task(config, loaded.vocab_sizes, loaded.item_counts).to(device)
        optimizer = torch.optim.Adam(task.parameters(), lr=config.lr)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        rates = []
        for epoch in range(config.epochs):
            batches = loaded.train_batches(config.batch_size, seed=epoch)
            rates.append(train_epoch(task, batches, optimizer, device, autocast, config.grad_clip)["positions_per_s"])
        out[f"{loss}_positions_per_s"] = median_after_warmup(rates)
        if device.type == "cuda":
            out[f"{loss}_peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run(bench: BenchConfig) -> dict:
    from seqrec_ray.train.config import TrainConfig

    with tempfile.TemporaryDirectory(prefix="seqrec-bench-") as tmp:
        work = Path(tmp)
        data = Path(bench.data) if bench.data else generate_artifacts(
            work / "artifacts", bench.gen_users, bench.gen_items, bench.seed)
        train_config = TrainConfig(model="lstm", epochs=bench.epochs, batch_size=bench.batch_size,
                                   num_negatives=bench.num_negatives, seed=bench.seed)
        report = {"data": str(bench.data or f"generated ({bench.gen_users} users, {bench.gen_items} items)"),
                  "model": "lstm (default knobs)", "epochs": bench.epochs, "batch_size": bench.batch_size,
                  "num_negatives": bench.num_negatives}
        started = time.perf_counter()
        if not bench.no_ray:
            report["ray_vs_in_process"] = bench_ray_vs_in_process(train_config, data, work, bench.threads)
        report["throughput"] = bench_throughput(train_config, data, bench.threads)
        report["bench_seconds"] = time.perf_counter() - started
        return report


def print_report(report: dict) -> None:
    print(f"data: {report['data']}  model: {report['model']}  epochs: {report['epochs']} (first = warm-up)")
    if "ray_vs_in_process" in report:
        r = report["ray_vs_in_process"]
        print(f"train epoch s   in-process before / after: {_rounded(r['in_process_train_s'])}")
        print(f"train epoch s   Ray, 1 worker:             {_rounded(r['ray_train_s'])}")
        print(f"Ray / in-process train-epoch time: median {r['train_ratio_median']:.3f}x, "
              f"fastest epochs {r['train_ratio_min']:.3f}x  (goal <= 1.05x)")
        print(f"Ray / in-process whole-epoch wall time incl. valid + checkpoint (median): "
              f"{r['wall_ratio_median']:.3f}x")
    t = report["throughput"]
    print(f"LSTM full softmax:    {t['full_positions_per_s']:,.0f} positions/s on {t['device']} ({t['threads']} threads)")
    print(f"LSTM sampled softmax: {t['sampled_positions_per_s']:,.0f} positions/s "
          f"({report['num_negatives']} negatives)")
    for loss in ("full", "sampled"):
        if f"{loss}_peak_gpu_mib" in t:
            print(f"peak GPU memory ({loss}): {t[f'{loss}_peak_gpu_mib']:,.0f} MiB")
    print(json.dumps(report))


def _rounded(values):
    return [_rounded(v) for v in values] if isinstance(values, list) else round(values, 2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="artifacts directory (default: generate a small one)")
    p.add_argument("--epochs", type=int, default=BenchConfig.epochs)
    p.add_argument("--threads", type=int, default=BenchConfig.threads,
                   help="torch threads in-process = CPUs of the Ray worker (default 1)")
    p.add_argument("--batch-size", type=int, default=BenchConfig.batch_size)
    p.add_argument("--num-negatives", type=int, default=BenchConfig.num_negatives)
    p.add_argument("--gen-users", type=int, default=BenchConfig.gen_users, help="generated data: users")
    p.add_argument("--gen-items", type=int, default=BenchConfig.gen_items, help="generated data: items")
    p.add_argument("--no-ray", action="store_true", help="in-process parts only (GPU box without Ray)")
    args = p.parse_args(argv)
    try:
        bench = BenchConfig(data=args.data, epochs=args.epochs, threads=args.threads, batch_size=args.batch_size,
                            num_negatives=args.num_negatives, no_ray=args.no_ray,
                            gen_users=args.gen_users, gen_items=args.gen_items)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = run(bench)
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

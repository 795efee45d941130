"""Train a sequence model on a featurize artifacts directory.

    python jobs/train.py --data DIR --model lstm --output OUT --num-workers 2
    ray job submit --working-dir . -- python jobs/train.py --data DIR --model lstm --output OUT
    python jobs/train.py --data DIR --model transformer --output OUT --no-ray   # one process, no Ray

Writes OUT/best (the checkpoint with the best valid NDCG@10, docs/contracts.md §3),
OUT/latest, OUT/curves.json + curves.png and OUT/result.json; prints one line per epoch.
Re-running with the same --run-name (default: derived from data + config) and --storage
resumes from the run's latest checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="featurize artifacts directory (manifest.json, sequences/, vocab/)")
    p.add_argument("--model", default="lstm", help="lstm | gru | transformer")
    p.add_argument("--output", required=True, help="directory for best/, latest/, curves and result.json")
    ray_args = p.add_argument_group("Ray Train")
    ray_args.add_argument("--num-workers", type=int, default=2)
    ray_args.add_argument("--use-gpu", action="store_true", help="one GPU per worker, bf16 autocast")
    ray_args.add_argument("--cpus-per-worker", type=float, default=1.0)
    ray_args.add_argument("--run-name", default=None, help="Ray Train run name (same name + storage resumes)")
    ray_args.add_argument("--storage", default=None, help="Ray Train storage path (default ~/ray_results)")
    ray_args.add_argument("--max-failures", type=int, default=0, help="worker-group restarts from the latest checkpoint")
    ray_args.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS"),
                          help="cluster to join (default $RAY_ADDRESS; unset: start a local Ray)")
    ray_args.add_argument("--shard-cache-mib", type=float, default=2048.0,
                          help="workers keep their data shard in memory when it is at most this big; "
                               "0 = stream it from Ray Data every epoch")
    ray_args.add_argument("--no-ray", action="store_true", help="train in this process without Ray")
    m = p.add_argument_group("model (default: the model's tuned default)")
    m.add_argument("--dim", type=int)
    m.add_argument("--hidden", type=int)
    m.add_argument("--num-layers", type=int)
    m.add_argument("--num-heads", type=int)
    m.add_argument("--dropout", type=float)
    m.add_argument("--emb-dropout", type=float)
    m.add_argument("--no-event-type", action="store_true", help="drop the event-type input embedding")
    m.add_argument("--no-gap", action="store_true", help="drop the time-gap input embedding")
    m.add_argument("--no-category", action="store_true", help="drop the category input embedding")
    t = p.add_argument_group("training")
    t.add_argument("--loss", default="full", help="full | sampled")
    t.add_argument("--num-negatives", type=int, default=1024)
    t.add_argument("--negative-sampler", default="uniform", help="uniform | popularity")
    t.add_argument("--mask-history-in-loss", action="store_true",
                   help="full softmax: leave each position's earlier items out of its softmax, as "
                        "evaluate --mask-history (the S3-Rec protocol) leaves them out of the ranking")
    t.add_argument("--epochs", type=int, help="upper bound; early stopping ends sooner (default: TrainConfig's)")
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--eval-batch-size", type=int, default=1024)
    t.add_argument("--lr", type=float, help="default: the model's tuned learning rate")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--max-len", type=int, default=50)
    t.add_argument("--patience", type=int, help="epochs without a better valid NDCG@10; 0 = never stop (default: TrainConfig's)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--torch-threads", type=int, help="torch threads per process (default: CPUs per worker)")
    return p.parse_args(argv)


def build_configs(args: argparse.Namespace):
    """argparse -> (TrainConfig, RayTrainConfig); ValueError names a bad value."""
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.ray_trainer import RayTrainConfig

    # Left out when not given, so TrainConfig's tuned per-model defaults apply.
    given = {k: v for k, v in dict(epochs=args.epochs, lr=args.lr, patience=args.patience).items() if v is not None}
    train = TrainConfig(
        model=args.model, dim=args.dim, hidden=args.hidden, num_layers=args.num_layers,
        num_heads=args.num_heads, dropout=args.dropout, emb_dropout=args.emb_dropout,
        use_event_type=not args.no_event_type, use_gap=not args.no_gap, use_category=not args.no_category,
        loss=args.loss, num_negatives=args.num_negatives, negative_sampler=args.negative_sampler,
        mask_history_in_loss=args.mask_history_in_loss,
        batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
        weight_decay=args.weight_decay, max_len=args.max_len, seed=args.seed,
        torch_threads=args.torch_threads, run_name=args.run_name or "run", **given,
    )
    ray_config = RayTrainConfig(
        num_workers=args.num_workers, use_gpu=args.use_gpu, cpus_per_worker=args.cpus_per_worker,
        run_name=args.run_name, storage_path=str(Path(args.storage).resolve()) if args.storage else None,
        max_failures=args.max_failures, shard_cache_mib=args.shard_cache_mib,
    )
    return train, ray_config


def check_data_dir(path: str) -> None:
    data = Path(path)
    if not data.is_dir():
        raise FileNotFoundError(f"--data {path}: no such directory")
    for needed in ("manifest.json", "sequences", "vocab"):
        if not (data / needed).exists():
            raise FileNotFoundError(f"--data {path}: not a featurize artifacts directory (no {needed}); run jobs/featurize.py first")


def init_ray(ray_config, address: str | None) -> None:
    """Join ``address`` (RAY_ADDRESS, set by ``ray job submit``); else a private local Ray
    with enough logical CPUs for the workers plus Ray Data."""
    from seqrec_ray.ray_env import init_ray as connect

    connect(address, max(os.cpu_count() or 1, int(ray_config.num_workers * ray_config.cpus_per_worker) + 2))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout (or a job's working dir)
        sys.path.insert(0, str(REPO_ROOT))
    try:
        check_data_dir(args.data)
        train_config, ray_config = build_configs(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.no_ray:
        from seqrec_ray.train.loop import run_in_process

        summary = run_in_process(train_config, args.data, args.output)
    else:
        from seqrec_ray.train.ray_trainer import fit

        init_ray(ray_config, args.ray_address)
        summary = fit(train_config, ray_config, args.data, args.output)
    print(json.dumps({k: summary[k] for k in ("run_name", "best_epoch", "epochs_run", "valid", "test")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train a sequence model on a featurize artifacts directory.

    python jobs/train.py --data DIR --model lstm --output OUT --num-workers 2
    ray job submit --working-dir . -- python jobs/train.py --data DIR --model lstm --output OUT
    python jobs/train.py --data DIR --model transformer --output OUT --no-ray   # one process, no Ray
    python jobs/train.py --data DIR --model transformer --output OUT --seeds 0,1,2   # mean ± sd over seeds

Writes OUT/best (the checkpoint with the best valid NDCG@10, docs/contracts.md §3),
OUT/latest, OUT/curves.json + curves.png and OUT/result.json; prints one line per epoch.
With --outcome-loss (artifacts with a temporal split), the purchase-propensity and churn
heads are calibrated on the validation cut-off (OUT/best/outcome_calibration.json) and
reported on the test cut-off beside the baselines (OUT/reliability-{purchase,churn}.png).
Re-running with the same --run-name (default: derived from data + config) and --storage
resumes from the run's latest checkpoint. With --seeds, each seed is a complete run in
OUT/seed-N and OUT/result.json holds every seed's metrics with their mean and standard
deviation (OUT/seeds.png: each seed's validation curve).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from seqrec_ray import cli

# Flags whose established spelling differs from the generated one (README, scripts).
TRAIN_FLAGS = {
    "use_event_type": cli.Flag(off=("--no-event-type",)),
    "use_gap": cli.Flag(off=("--no-gap",)),
    "use_category": cli.Flag(off=("--no-category",)),
}
RAY_FLAGS = {"storage_path": cli.Flag(names=("--storage",), type=lambda path: str(Path(path).resolve()))}


def build_parser() -> argparse.ArgumentParser:
    """Job flags, then one flag per RayTrainConfig and TrainConfig field (seqrec_ray.cli)."""
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.ray_trainer import RayTrainConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="featurize artifacts directory (manifest.json, sequences/, vocab/)")
    p.add_argument("--output", required=True, help="directory for best/, latest/, curves and result.json")
    ray_args = cli.add_flags(p, RayTrainConfig, title="Ray Train (RayTrainConfig)", flags=RAY_FLAGS)
    ray_args.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS"),
                          help="cluster to join (default $RAY_ADDRESS; unset: start a local Ray)")
    ray_args.add_argument("--no-ray", action="store_true", help="train in this process without Ray")
    p.add_argument("--seeds", default=None, help=(
        "comma-separated seeds (e.g. 0,1,2): one run per seed in OUTPUT/seed-N, their mean ± sd "
        "in OUTPUT/result.json and the printed table (replaces --seed)"))
    # run_name: one --run-name names the Ray Train run and the training config alike.
    cli.add_flags(p, TrainConfig, title="model and training (TrainConfig; model knobs default to the model's tuned ones)",
                  flags=TRAIN_FLAGS, exclude=("run_name",))
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_configs(args: argparse.Namespace):
    """argparse -> (TrainConfig, RayTrainConfig); ValueError names a bad value."""
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.ray_trainer import RayTrainConfig

    ray_config = cli.build(RayTrainConfig, args)
    train = cli.build(TrainConfig, args, run_name=ray_config.run_name or "run")
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
    try:
        check_data_dir(args.data)
        train_config, ray_config = build_configs(args)
        seeds = parse_seed_list(args)
    except (ValueError, FileNotFoundError) as exc:
        return cli.fail(exc)
    if not args.no_ray:
        init_ray(ray_config, args.ray_address)
    if seeds is None:
        summary = train_once(args, train_config, ray_config, args.output)
        print(json.dumps({k: summary[k] for k in ("run_name", "best_epoch", "epochs_run", "valid", "test")}, indent=2))
        if summary.get("outcomes"):
            from seqrec_ray.train.outcomes import format_outcomes

            print("\n".join(format_outcomes(summary["outcomes"])))
        return 0
    from seqrec_ray.train import seeds as seed_runs

    summaries = {}
    for seed in seeds:
        print(f"[train] seed {seed} ({len(summaries) + 1} of {len(seeds)})", flush=True)
        named = ray_config if ray_config.run_name is None else dataclasses.replace(
            ray_config, run_name=f"{ray_config.run_name}-seed{seed}")
        summaries[seed] = train_once(args, dataclasses.replace(train_config, seed=seed), named,
                                     seed_runs.seed_directory(args.output, seed))
    result = seed_runs.aggregate(summaries)
    path = seed_runs.write_seeds_result(result, args.output)
    print(seed_runs.seeds_table(result))
    print(f"[train] {len(seeds)} seeds -> {path}")
    return 0


def parse_seed_list(args: argparse.Namespace) -> tuple[int, ...] | None:
    """--seeds as a tuple, or None for a single run; --seeds with --seed is refused."""
    if args.seeds is None:
        return None
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.seeds import parse_seeds

    if "seed" in cli.given(args, TrainConfig):
        raise ValueError("give --seed or --seeds, not both")
    return parse_seeds(args.seeds)


def train_once(args: argparse.Namespace, train_config, ray_config, output: str | Path) -> dict:
    """One training run (in this process with --no-ray, else on Ray Train) into ``output``."""
    if args.no_ray:
        from seqrec_ray.train.loop import run_in_process

        return run_in_process(train_config, args.data, output)
    from seqrec_ray.train.ray_trainer import fit

    return fit(train_config, ray_config, args.data, output)


if __name__ == "__main__":
    sys.exit(main())

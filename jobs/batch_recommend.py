"""Top-k recommendations for every user of an artifacts directory, written as Parquet.

    python jobs/batch_recommend.py --data out/taobao --checkpoint runs/taobao/best --output out/recs
    ray job submit --working-dir . -- python jobs/batch_recommend.py --data /shared/out --checkpoint /shared/ckpt --output /shared/recs

Ray Data reads DATA/sequences and runs ``map_batches`` over a pool of --num-actors
encoder+ranker actors (each loads the checkpoint once). OUTPUT gets part-*.parquet with
``user_id``, ``items`` (list of raw item ids, best first; never <pad>/<oov>) and
``scores`` (list of float), plus _summary.json. Joins the cluster named by --address or
RAY_ADDRESS (set by `ray job submit`); otherwise starts a local Ray. Prints a JSON summary.
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
    p.add_argument("--data", required=True, help="featurize artifacts directory (sequences/, vocab/)")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory trained on that data (e.g. OUT/best)")
    p.add_argument("--output", required=True, help="directory for the Parquet parts (earlier parts are replaced)")
    p.add_argument("--k", type=int, default=20, help="items per user (default 20)")
    p.add_argument("--batch-size", type=int, default=512, help="users per encoder call (default 512)")
    p.add_argument("--num-actors", type=int, default=2, help="encoder+ranker actors (default 2)")
    p.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs (and torch threads) per actor")
    p.add_argument("--exclude-seen", action="store_true", help="never recommend an item already in the user's sequence")
    p.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else start a local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a locally started Ray (default: all)")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace):
    from seqrec_ray.train.batch_inference import BatchRecommendConfig

    return BatchRecommendConfig(
        data=args.data, checkpoint=args.checkpoint, output=args.output, k=args.k, batch_size=args.batch_size,
        num_actors=args.num_actors, cpus_per_actor=args.cpus_per_actor, exclude_seen=args.exclude_seen,
    )


def init_ray(address: str | None, num_cpus: int | None, needed_cpus: float) -> None:
    """Join the named cluster (or RAY_ADDRESS); else a local Ray with room for the actor pool plus a reader."""
    from seqrec_ray.ray_env import init_ray as connect

    connect(address, num_cpus or max(os.cpu_count() or 1, int(needed_cpus + 0.999) + 1))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout
        sys.path.insert(0, str(REPO_ROOT))
    try:
        if args.num_cpus is not None and args.num_cpus < 1:
            raise ValueError(f"--num-cpus must be >= 1, got {args.num_cpus}")
        config = build_config(args)
        config.check_paths()  # fail before starting Ray
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from seqrec_ray.train.batch_inference import run_batch_recommend

    init_ray(args.address, args.num_cpus, config.num_actors * config.cpus_per_actor)
    summary = run_batch_recommend(config, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

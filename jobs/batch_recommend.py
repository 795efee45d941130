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

from seqrec_ray import cli


def build_parser() -> argparse.ArgumentParser:
    """One flag per BatchRecommendConfig field, then the job's Ray flags."""
    from seqrec_ray.train.batch_inference import BatchRecommendConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_flags(p, BatchRecommendConfig)
    p.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else start a local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a locally started Ray (default: all)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_config(args: argparse.Namespace):
    from seqrec_ray.train.batch_inference import BatchRecommendConfig

    return cli.build(BatchRecommendConfig, args)


def init_ray(address: str | None, num_cpus: int | None, needed_cpus: float) -> None:
    """Join the named cluster (or RAY_ADDRESS); else a local Ray with room for the actor pool plus a reader."""
    from seqrec_ray.ray_env import init_ray as connect

    connect(address, num_cpus or max(os.cpu_count() or 1, int(needed_cpus + 0.999) + 1))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.num_cpus is not None and args.num_cpus < 1:
            raise ValueError(f"--num-cpus must be >= 1, got {args.num_cpus}")
        config = build_config(args)
        config.check_paths()  # fail before starting Ray
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        return cli.fail(exc)
    from seqrec_ray.train.batch_inference import run_batch_recommend

    init_ray(args.address, args.num_cpus, config.num_actors * config.cpus_per_actor)
    summary = run_batch_recommend(config, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

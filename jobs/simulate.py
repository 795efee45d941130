"""Simulate organic shopping logs (no recommender in the loop) as sharded Parquet.

    python jobs/simulate.py --users 2000 --days 14 --output runs/logs --seed 7
    ray job submit --working-dir . -- python jobs/simulate.py --users 100000 --days 30 --output /shared/logs

Writes OUTPUT/part-*.parquet in the project event schema (read them back with
``--format events``) and OUTPUT/ground_truth/ (the users' true preferences, the catalogue,
sim.json). The same --seed gives the same rows whatever --shards. Joins the Ray cluster
named by RAY_ADDRESS (`auto`: one started with `ray start`), else starts a local Ray.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, required=True, help="number of shoppers (u0 .. u<N-1>)")
    p.add_argument("--days", type=float, required=True, help="days of behaviour to simulate")
    p.add_argument("--output", required=True, help="directory for part-*.parquet and ground_truth/")
    p.add_argument("--seed", type=int, default=0, help="master seed of the world and the behaviour")
    p.add_argument("--shards", type=int, default=0, help="Parquet parts = Ray tasks (default: automatic)")
    p.add_argument("--items", type=int, help="catalogue size (default: SimConfig's)")
    p.add_argument("--categories", type=int, help="number of categories (default: SimConfig's)")
    p.add_argument("--overwrite", action="store_true", help="replace logs already in --output")
    p.add_argument("--num-cpus", type=int, help="CPUs of a locally started Ray (default: all)")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace):
    from seqrec_ray.sim.logs import SimulateConfig
    from seqrec_ray.sim.organic import OrganicConfig
    from seqrec_ray.sim.world import SimConfig

    world = {"seed": args.seed}
    if args.items is not None:
        world["n_items"] = args.items
    if args.categories is not None:
        world["n_categories"] = args.categories
    if args.num_cpus is not None and args.num_cpus < 1:
        raise ValueError(f"--num-cpus must be >= 1, got {args.num_cpus}")
    return SimulateConfig(output=args.output, organic=OrganicConfig(users=args.users, days=args.days),
                          sim=SimConfig(**world), shards=args.shards, overwrite=args.overwrite)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout
        sys.path.insert(0, str(REPO_ROOT))
    from seqrec_ray.ray_env import init_ray
    from seqrec_ray.sim.logs import run_simulation

    try:
        config = build_config(args)
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    init_ray(num_cpus=args.num_cpus)
    try:
        summary = run_simulation(config, log=lambda line: print(line, file=sys.stderr, flush=True))
    except (FileExistsError, OSError) as exc:
        print(f"error: {exc} (use --overwrite to replace)" if isinstance(exc, FileExistsError) else f"error: {exc}",
              file=sys.stderr)
        return 2
    keys = ("events", "users", "items", "categories", "shards", "event_types", "seconds", "events_per_second")
    print(json.dumps({k: summary[k] for k in keys}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

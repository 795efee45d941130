"""Simulate organic shopping logs (no recommender in the loop) as sharded Parquet.

    python jobs/simulate.py --users 2000 --days 14 --output runs/logs --seed 7
    ray job submit --working-dir . -- python jobs/simulate.py --users 100000 --days 30 --output /shared/logs

Writes OUTPUT/part-*.parquet in the project event schema (read them back with
``--format events``), OUTPUT/ground_truth/ (the users' true preferences, the items' hidden
parameters, sim.json) and, beside the directory, the shop's product catalogue
OUTPUT.items.parquet (``--items-output``; one row per item: title, brand, category_id, price,
attributes, for featurize's ``--items``). It is not inside OUTPUT because featurize reads
every Parquet file there as events. The same --seed gives the same rows (and catalogue)
whatever --shards. Joins the Ray cluster named by RAY_ADDRESS (`auto`: one started with
`ray start`), else starts a local Ray.
"""

from __future__ import annotations

import argparse
import json
import sys

from seqrec_ray import cli

# Established spellings (README, scripts) of the world's knobs.
SIM_FLAGS = {"n_items": "--items", "n_categories": "--categories"}


def build_parser() -> argparse.ArgumentParser:
    """Job flags, then one flag per field of SimulateConfig, OrganicConfig and SimConfig."""
    from seqrec_ray.sim.logs import SimulateConfig
    from seqrec_ray.sim.organic import OrganicConfig
    from seqrec_ray.sim.world import SimConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_flags(p, OrganicConfig)
    cli.add_flags(p, SimulateConfig)
    p.add_argument("--num-cpus", type=int, help="CPUs of a locally started Ray (default: all)")
    cli.add_flags(p, SimConfig, title="the simulated world (SimConfig)", flags=SIM_FLAGS)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_config(args: argparse.Namespace):
    """argparse -> SimulateConfig; ValueError names a bad value."""
    from seqrec_ray.sim.logs import SimulateConfig
    from seqrec_ray.sim.organic import OrganicConfig
    from seqrec_ray.sim.world import SimConfig

    if args.num_cpus is not None and args.num_cpus < 1:
        raise ValueError(f"--num-cpus must be >= 1, got {args.num_cpus}")
    return cli.build(SimulateConfig, args, organic=cli.build(OrganicConfig, args), sim=cli.build(SimConfig, args))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from seqrec_ray.ray_env import init_ray
    from seqrec_ray.sim.logs import run_simulation

    try:
        config = build_config(args)
    except (ValueError, TypeError) as exc:
        return cli.fail(exc)
    init_ray(num_cpus=args.num_cpus)
    try:
        summary = run_simulation(config, log=lambda line: print(line, file=sys.stderr, flush=True))
    except (FileExistsError, OSError) as exc:
        print(f"error: {exc} (use --overwrite to replace)" if isinstance(exc, FileExistsError) else f"error: {exc}",
              file=sys.stderr)
        return 2
    keys = ("events", "users", "items", "categories", "items_output", "shards", "event_types", "seconds", "events_per_second")
    print(json.dumps({k: summary[k] for k in keys}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the organic log generator: events/s in one process vs the sharded Ray job.

    python bench/simulate.py                      # about 10 million events (115k users x 30 days)
    python bench/simulate.py --users 20000 --days 14 --num-cpus 2

Baseline, in this process: one block of users simulated and converted to a table (no
Ray, no Parquet). Then the real job path (``run_simulation``: Ray tasks writing Parquet
shards plus ground truth) on a local Ray. Prints both rates, their ratio, and the load
average, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=115_000)
    p.add_argument("--days", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shards", type=int, default=0)
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--output", help="keep the logs here (default: a temporary directory, deleted)")
    args = p.parse_args(argv)
    import ray

    from seqrec_ray.ray_env import init_ray
    from seqrec_ray.sim.logs import SimulateConfig, run_simulation
    from seqrec_ray.sim.organic import OrganicConfig, simulate_block
    from seqrec_ray.sim.world import SimConfig, World

    sim = SimConfig(seed=args.seed)
    organic = OrganicConfig(users=args.users, days=args.days)
    world = World(sim)
    simulate_block(world, OrganicConfig(users=sim.user_block, days=1), 0)  # warm imports and caches
    start = time.perf_counter()
    base_events = simulate_block(world, OrganicConfig(users=sim.user_block, days=args.days), 0).num_rows
    base_rate = base_events / (time.perf_counter() - start)
    print(f"baseline: 1 block ({sim.user_block} users) in-process: {base_events:,} events, {base_rate:,.0f} events/s",
          flush=True)

    load_before = os.getloadavg()
    start = time.perf_counter()
    # address="local": measure a fresh local Ray even if a `ray start` cluster runs on this machine.
    init_ray("local", args.num_cpus, log_to_driver=False)
    init_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        out = args.output or os.path.join(tmp, "logs")
        cfg = SimulateConfig(output=out, organic=organic, sim=sim, shards=args.shards, overwrite=True)
        summary = run_simulation(cfg, log=lambda line: print(line, flush=True))
    ray.shutdown()
    rate = summary["events_per_second"]
    print(json.dumps({
        "users": args.users, "days": args.days, "events": summary["events"], "shards": summary["shards"],
        "ray_init_s": round(init_s, 1), "job_s": round(summary["seconds"], 1),
        "job_events_per_s": round(rate), "baseline_events_per_s": round(base_rate),
        "job_over_baseline": round(rate / base_rate, 2), "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

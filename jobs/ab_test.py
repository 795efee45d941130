"""Simulated A/B test: the same simulated shoppers against several recommendation policies.

    python jobs/ab_test.py --sim-dir runs/logs --arms random,popularity,recent,checkpoint:runs/lstm/best,oracle \
        --users 300 --sessions-per-user 2 --output runs/ab
    python jobs/ab_test.py --sim-dir runs/logs --arms popularity,checkpoint:runs/lstm/best \
        --url http://127.0.0.1:8000 --output runs/ab-http         # adds an arm served over HTTP
    python jobs/ab_test.py --sim-dir runs/logs --offline-data runs/artifacts --output runs/offline-online \
        --arms e1=checkpoint:runs/e1/best,e3=checkpoint:runs/e3/best,e10=checkpoint:runs/e10/best

Arms: random | popularity | recent | checkpoint:PATH | oracle | http[:URL], each optionally
LABEL=ARM. Every arm meets the same users with the same seeds (common random numbers).
Prints a table of CTR, add-to-cart rate, conversion rate and revenue per session with 95%
CIs and paired t-tests between arms (plus HTTP latency p50/p99), and writes
OUTPUT/ab_results.json, sessions.csv, ab_report.png, table.txt (and offline_vs_online.*).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sim-dir", required=True, help="organic logs + ground_truth/ written by jobs/simulate.py")
    p.add_argument("--arms", default="random,popularity,recent,oracle",
                   help="comma-separated [LABEL=]random|popularity|recent|checkpoint:PATH|oracle|http[:URL]")
    p.add_argument("--url", help="a running service (POST /recommend, POST /events): adds an 'http' arm")
    p.add_argument("--api-key", default=os.environ.get("SEQREC_API_KEY"), help="for --url (default: $SEQREC_API_KEY)")
    p.add_argument("--users", type=int, default=200, help="simulated shoppers per arm (the same ones in every arm)")
    p.add_argument("--sessions-per-user", type=int, default=2)
    p.add_argument("--slate-size", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=20, help="slates per session at most")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    p.add_argument("--exclude-purchased", action="store_true",
                   help="checkpoint and http arms never show items the user bought")
    p.add_argument("--http-user-prefix", default=None,
                   help="prefix of user ids sent over HTTP (default: fresh per run; '' = the simulator's ids)")
    p.add_argument("--offline-data", help="featurize artifacts of the organic logs: report offline NDCG@10 "
                                          "of each checkpoint arm beside its online conversion")
    p.add_argument("--offline-split", default="test", help="test | valid")
    p.add_argument("--output", required=True, help="directory for the report")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace):
    """argparse -> ABJobConfig; ValueError names a bad value."""
    from seqrec_ray.sim.ab import ABConfig, ABJobConfig, parse_arms

    ab = ABConfig(users=args.users, sessions_per_user=args.sessions_per_user, seed=args.seed,
                  slate_size=args.slate_size, max_steps=args.max_steps, level=args.level)
    return ABJobConfig(
        sim_dir=args.sim_dir, output=args.output, arms=parse_arms(args.arms, args.url), ab=ab,
        exclude_purchased=args.exclude_purchased, http_user_prefix=args.http_user_prefix,
        api_key=args.api_key, offline_data=args.offline_data, offline_split=args.offline_split,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout
        sys.path.insert(0, str(REPO_ROOT))
    from seqrec_ray.sim.ab import run_ab_job
    from seqrec_ray.sim.policies import ServiceError

    try:
        config = build_config(args)
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        result = run_ab_job(config, log=log, progress=not args.no_progress)
    except (ConnectionError, OSError) as exc:
        print(f"error: cannot reach {args.url or 'the service'}: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, ServiceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result["table"])
    report = result.get("offline_vs_online")
    if report:
        print(f"\nOffline ({report['split']} NDCG@10, unmasked) vs online conversion:")
        for row in report["rows"]:
            c = row["conversion_rate"]
            print(f"  {row['arm']:<16} NDCG@10 {row['ndcg@10']:.4f} (masked {row['ndcg@10_masked']:.4f})"
                  f"  conversion {c['mean']:.4f} [{c['low']:.4f}, {c['high']:.4f}]")
        print(f"  Pearson {report['pearson']}, Spearman {report['spearman']} across {len(report['rows'])} checkpoints")
    print("\nwrote " + ", ".join(result["files"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

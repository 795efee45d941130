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

from seqrec_ray import cli


def build_parser() -> argparse.ArgumentParser:
    """Job flags (arms), then one flag per field of ABJobConfig and ABConfig."""
    from seqrec_ray.sim.ab import ABConfig
    from seqrec_ray.sim.ab_job import ABJobConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default="random,popularity,recent,oracle",
                   help="comma-separated [LABEL=]random|popularity|recent|checkpoint:PATH|oracle|http[:URL]")
    p.add_argument("--url", help="a running service (POST /recommend, POST /events): adds an 'http' arm")
    cli.add_flags(p, ABJobConfig, exclude=("arms",), flags={"api_key": cli.Flag(
        default=os.environ.get("SEQREC_API_KEY"), help="for --url (default: $SEQREC_API_KEY)")})
    p.add_argument("--no-progress", action="store_true")
    cli.add_flags(p, ABConfig, title="the experiment (ABConfig)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_config(args: argparse.Namespace):
    """argparse -> ABJobConfig; ValueError names a bad value."""
    from seqrec_ray.sim.ab import ABConfig
    from seqrec_ray.sim.ab_job import ABJobConfig, parse_arms

    return cli.build(ABJobConfig, args, arms=parse_arms(args.arms, args.url), ab=cli.build(ABConfig, args))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from seqrec_ray.sim.ab_job import run_ab_job
    from seqrec_ray.sim.policies import ServiceError

    try:
        config = build_config(args)
    except (ValueError, TypeError) as exc:
        return cli.fail(exc)
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

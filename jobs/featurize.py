"""Featurize a behaviour log into an artifacts directory (docs/contracts.md §2).

    python jobs/featurize.py --input ../shared/data/taobao-userbehavior --format taobao --output out/taobao
    ray job submit --working-dir . -- python jobs/featurize.py --input /data/logs --format events --output /shared/out
    python jobs/featurize.py --input Beauty.txt --format s3rec --output out/beauty --store out/store.db

Joins the Ray cluster named by RAY_ADDRESS (set by `ray job submit`; `RAY_ADDRESS=auto` joins one
started with `ray start`); otherwise starts a local Ray with --num-cpus CPUs. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("taobao", "yoochoose", "diginetica", "s3rec", "events")  # = readers.FORMATS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="a file, a directory or a glob")
    p.add_argument("--format", required=True, help=" | ".join(FORMATS))
    p.add_argument("--output", required=True, help="artifacts directory (its parts are replaced)")
    p.add_argument("--min-item-count", type=int, default=1)
    p.add_argument("--min-category-count", type=int, default=1)
    p.add_argument("--max-seq-len", type=int, default=200)
    p.add_argument("--split", default="leave_one_out", help="leave_one_out | temporal")
    p.add_argument("--cutoff", help="temporal split: test from this time (epoch seconds or ISO 8601)")
    p.add_argument("--valid-cutoff", help="temporal split: validation from this time (< cutoff)")
    p.add_argument("--session-gap-minutes", type=float, default=30.0)
    p.add_argument("--min-timestamp", type=float, help="reject earlier events (default: 1990, 0 for s3rec)")
    p.add_argument("--max-timestamp", type=float, help="reject later events (default: 2100)")
    p.add_argument("--num-buckets", type=int, help="user hash buckets (default: from input size)")
    p.add_argument("--batch-rows", type=int, default=1_000_000, help="rows per read batch")
    p.add_argument("--store", help="bulk-load profiles and recent history into this store (URL or SQLite path)")
    p.add_argument("--load-store", dest="store", help=argparse.SUPPRESS)
    p.add_argument("--history-limit", type=int, help="events per user kept in the store (default: max-seq-len)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a locally started Ray (default: all)")
    p.add_argument("--keep-work", action="store_true", help="keep OUTPUT/_work (intermediate buckets)")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace):
    from seqrec_ray.data.pipeline import FeaturizeConfig
    from seqrec_ray.data.sequences import SequenceConfig
    from seqrec_ray.data.splits import SplitConfig, parse_time
    from seqrec_ray.data.validate import ValidateConfig
    from seqrec_ray.data.vocab import VocabConfig

    split = SplitConfig(
        protocol=args.split,
        cutoff=parse_time(args.cutoff) if args.cutoff is not None else None,
        valid_cutoff=parse_time(args.valid_cutoff) if args.valid_cutoff is not None else None)
    validate = None
    if args.min_timestamp is not None or args.max_timestamp is not None:
        default = ValidateConfig.for_format(args.format)
        validate = ValidateConfig(
            min_timestamp=default.min_timestamp if args.min_timestamp is None else args.min_timestamp,
            max_timestamp=default.max_timestamp if args.max_timestamp is None else args.max_timestamp)
    if args.num_cpus is not None and args.num_cpus < 1:
        raise ValueError(f"--num-cpus must be >= 1, got {args.num_cpus}")
    return FeaturizeConfig(
        input=args.input, format=args.format, output=args.output, validate=validate,
        vocab=VocabConfig(min_item_count=args.min_item_count,
                          min_category_count=args.min_category_count),
        sequence=SequenceConfig(max_seq_len=args.max_seq_len,
                                session_gap_seconds=args.session_gap_minutes * 60.0,
                                split=split),
        num_buckets=args.num_buckets, batch_rows=args.batch_rows, store=args.store,
        history_limit=args.history_limit, keep_work=args.keep_work)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout
        sys.path.insert(0, str(REPO_ROOT))
    from seqrec_ray.data import readers
    from seqrec_ray.ray_env import init_ray

    try:
        config = build_config(args)
        readers.list_input_files(config.input, config.format)  # fail before starting Ray
    except (ValueError, FileNotFoundError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from seqrec_ray.data.pipeline import run_featurize

    init_ray(num_cpus=args.num_cpus)
    try:
        manifest = run_featurize(config, log=lambda line: print(line, file=sys.stderr, flush=True))
    except ValueError as exc:  # e.g. a file of another format (wrong header)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    keys = ("rows_read", "rows_kept", "rows_rejected", "rejected_by_reason", "rows_duplicate",
            "users", "items", "categories", "sessions", "split", "stage_seconds", "data_version")
    print(json.dumps({k: manifest[k] for k in keys}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Evaluate product search on held-out (user, query, time) rows, with baselines.

    python jobs/evaluate_search.py --data ART --checkpoint CKPT --test-file FILE \
        [--format bestbuy|events] [--output DIR]

Ranks every item for each engagement a query led to in FILE, given that user's events in
ART before its time, and prints HR@1 (top-1 accuracy), MRR@5, NDCG@10 and HR@10 for
popularity, the exact query's most-clicked items, BM25, the model without the query, the
model without the history, and the model; then the share of the model's gain that the
history brings. --output writes search_eval.json and search_eval.png there.
"""

from __future__ import annotations

import argparse
import sys

from seqrec_ray import cli

FLAGS = {"data_dir": "--data", "checkpoint_dir": "--checkpoint"}


def build_parser() -> argparse.ArgumentParser:
    from seqrec_ray.train.search_eval import SearchEvalConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_flags(p, SearchEvalConfig, flags=FLAGS)
    p.add_argument("--output", help="write search_eval.json and search_eval.png into this directory")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from seqrec_ray.train.search_eval import (
        SearchEvalConfig,
        format_search_table,
        run_search_evaluation,
        save_search_report,
    )

    try:
        result = run_search_evaluation(cli.build(SearchEvalConfig, args))
    except (ValueError, FileNotFoundError) as exc:
        return cli.fail(exc)
    print(format_search_table(result))
    if args.output:
        paths = save_search_report(result, args.output)
        print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())

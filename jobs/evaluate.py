"""Evaluate a checkpoint on a featurize artifacts directory, with baselines.

    python jobs/evaluate.py --data DIR --checkpoint OUT/best [--split test|valid]
        [--mask-history | --no-mask-history] [--sampled-negatives FILE] [--output FILE]

Prints a table (model, popularity, most-recent) of full-ranking HR/NDCG/MRR@K and
catalogue coverage; with --sampled-negatives (``user neg1 ... neg99`` lines, raw ids, as
S3-Rec's LastFM_sample.txt) also metrics among those fixed candidates, labelled sampled.
--output writes the same numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seqrec_ray import cli

# EvaluateConfig's fields under the job's established names, with their help.
EVALUATE_FLAGS = {"data_dir": "--data", "checkpoint_dir": "--checkpoint"}  # the README's spellings


def build_parser() -> argparse.ArgumentParser:
    from seqrec_ray.train.evaluation import EvaluateConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_flags(p, EvaluateConfig, flags=EVALUATE_FLAGS)
    p.add_argument("--output", help="write the metrics as JSON to this file")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from seqrec_ray.train.evaluation import EvaluateConfig, format_table, run_evaluation

    try:
        device = cli.given(args, EvaluateConfig).get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        config = cli.build(EvaluateConfig, args, device=device)
        result = run_evaluation(config)
    except (ValueError, FileNotFoundError) as exc:
        return cli.fail(exc)
    print(format_table(result))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Featurize a behaviour log into an artifacts directory (docs/contracts.md §2).

    python jobs/featurize.py --input ../shared/data/taobao-userbehavior --format taobao --output out/taobao
    ray job submit --working-dir . -- python jobs/featurize.py --input /data/logs --format events --output /shared/out
    python jobs/featurize.py --input Beauty.txt --format s3rec --output out/beauty --store out/store.db
    python jobs/featurize.py --input logs/ --format events --output out/logs --forget deletions.txt

Joins the Ray cluster named by RAY_ADDRESS (set by `ray job submit`; `RAY_ADDRESS=auto` joins one
started with `ray start`); otherwise starts a local Ray with --num-cpus CPUs. Prints a JSON summary;
exits 2 with `error: ...` for bad input, a file not of the format, or no valid rows (the rejects
are then in OUTPUT/rejects/).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from seqrec_ray import cli


def build_parser() -> argparse.ArgumentParser:
    """Job flags, then one flag per field of FeaturizeConfig and the stage configs in it."""
    from seqrec_ray.data.pipeline import FeaturizeConfig
    from seqrec_ray.data.profiles import ProfileConfig
    from seqrec_ray.data.sequences import SequenceConfig
    from seqrec_ray.data.splits import PROTOCOLS, SplitConfig, parse_time
    from seqrec_ray.data.validate import ValidateConfig
    from seqrec_ray.data.vocab import VocabConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_flags(p, FeaturizeConfig)
    p.add_argument("--load-store", dest=cli.dest(FeaturizeConfig, "store"), default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)  # the flag's old name
    p.add_argument("--num-cpus", type=int, help="CPUs of a locally started Ray (default: all)")
    cli.add_flags(p, VocabConfig, title="vocabulary (VocabConfig)")
    gap_minutes = SequenceConfig().session_gap_seconds / 60
    cli.add_flags(p, SequenceConfig, title="sequences (SequenceConfig)", flags={"session_gap_seconds": cli.Flag(
        names=("--session-gap-minutes",), type=lambda minutes: float(minutes) * 60.0,
        help=f"idle minutes that start a new session (default: {gap_minutes:g})")})
    cli.add_flags(p, SplitConfig, title="split (SplitConfig)", flags={
        "protocol": cli.Flag(names=("--split",), help=" | ".join(PROTOCOLS)),
        "cutoff": cli.Flag(type=parse_time, help="temporal split: test from this time (epoch seconds or ISO 8601)"),
        "valid_cutoff": cli.Flag(type=parse_time, help="temporal split: validation from this time (< cutoff)"),
    })
    cli.add_flags(p, ValidateConfig, title="validation (ValidateConfig; default: the format's time range)", flags={
        "min_timestamp": cli.Flag(help="reject earlier events (default: 1990, 0 for s3rec)"),
        "max_timestamp": cli.Flag(help="reject later events (default: 2100)"),
    })
    cli.add_flags(p, ProfileConfig, title="user profiles (ProfileConfig)", flags={"time_tags": cli.Flag(
        help="new / active / dormant tags (default: on, off where time is positional, as in s3rec)")})
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_config(args: argparse.Namespace):
    """argparse -> FeaturizeConfig; ValueError names a bad value."""
    from seqrec_ray.data.pipeline import FeaturizeConfig
    from seqrec_ray.data.profiles import ProfileConfig
    from seqrec_ray.data.sequences import SequenceConfig
    from seqrec_ray.data.splits import SplitConfig
    from seqrec_ray.data.validate import ValidateConfig
    from seqrec_ray.data.vocab import VocabConfig

    sequence = cli.build(SequenceConfig, args, split=cli.build(SplitConfig, args))
    config = cli.build(FeaturizeConfig, args, vocab=cli.build(VocabConfig, args), sequence=sequence)
    # validate/profile None = derived from the format: their flags refine that default.
    if cli.given(args, ValidateConfig):
        config = replace(config, validate=cli.build(ValidateConfig, args, base=config.resolved_validate()))
    if cli.given(args, ProfileConfig):
        config = replace(config, profile=cli.build(ProfileConfig, args, base=config.resolved_profile()))
    if args.num_cpus is not None and args.num_cpus < 1:
        raise ValueError(f"--num-cpus must be >= 1, got {args.num_cpus}")
    return config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from seqrec_ray.data import readers
    from seqrec_ray.data.forget import read_user_ids
    from seqrec_ray.ray_env import init_ray

    try:
        config = build_config(args)
        readers.list_input_files(config.input, config.format)  # fail before starting Ray
        if config.forget:
            read_user_ids(config.forget)
    except (ValueError, FileNotFoundError, TypeError) as exc:
        return cli.fail(exc)
    from seqrec_ray.data.pipeline import run_featurize

    init_ray(num_cpus=args.num_cpus)
    try:
        manifest = run_featurize(config, log=lambda line: print(line, file=sys.stderr, flush=True))
    except (ValueError, FileNotFoundError) as exc:  # a file of another format, no valid rows
        return cli.fail(exc)
    keys = ("rows_read", "rows_kept", "rows_rejected", "rejected_by_reason", "rows_duplicate",
            "rows_forgotten", "users_forgotten", "forget_list_version",
            "users", "items", "categories", "sessions", "split", "catalogue",
            "cold_item_train_events_removed", "stage_seconds", "data_version")
    print(json.dumps({k: manifest[k] for k in keys}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

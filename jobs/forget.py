"""Forget users: remove their rows from a featurize artifacts directory (and the store).

    python jobs/forget.py --artifacts out/taobao --user 1000123 --user 1000456
    python jobs/forget.py --artifacts out/taobao --users deletions.txt --store out/store.db

Rewrites sequences/, profiles/ and rejects/ without the users (new parts first, then each
moved over the old one) and updates manifest.json (rows_forgotten, users_forgotten,
forget_list_version). With --store, calls forget_user for each id first, and applies the
store's whole deletion list to the artifacts. A model already trained on the directory
still carries what it learnt from them: featurize with the list, retrain and deploy to
remove that (README "Forgetting a user"). Prints a JSON summary of what was removed.
"""

from __future__ import annotations

import argparse
import json
import sys

from seqrec_ray import cli


def build_parser() -> argparse.ArgumentParser:
    from seqrec_ray.data.forget import ForgetConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_flags(p, ForgetConfig, exclude=("user_ids",))
    p.add_argument("--user", dest="user_ids", action="append", default=[], metavar="ID",
                   help="a user id to forget (repeat for more)")
    return p


def build_config(args: argparse.Namespace):
    """argparse -> ForgetConfig; ValueError names a bad value."""
    from seqrec_ray.data.forget import ForgetConfig

    return cli.build(ForgetConfig, args, user_ids=tuple(args.user_ids))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from seqrec_ray.data.forget import run_forget

    try:
        summary = run_forget(build_config(args),
                             log=lambda line: print(line, file=sys.stderr, flush=True))
    except (ValueError, FileNotFoundError) as exc:
        return cli.fail(exc)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

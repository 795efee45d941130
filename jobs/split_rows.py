"""Split a text log with a header line into random train / test rows (seeded).

    python jobs/split_rows.py --input ../shared/data/bestbuy-xbox-queries/clicks_train80.csv \
        --output runs/bestbuy-split [--test-share 0.2] [--seed 0]

Writes OUTPUT/train.csv and OUTPUT/test.csv (each with the header): featurize the first,
hand the second to jobs/evaluate_search.py --test-file.
"""

from __future__ import annotations

import argparse
import json
import sys

from seqrec_ray import cli


def main(argv: list[str] | None = None) -> int:
    from seqrec_ray.data.row_split import RowSplitConfig, split_rows

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_flags(parser, RowSplitConfig)
    args = parser.parse_args(argv)
    try:
        result = split_rows(cli.build(RowSplitConfig, args))
    except (ValueError, FileNotFoundError) as exc:
        return cli.fail(exc)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m analysis.sensitivity``: the same command as ``python -m tuner.study`` (the same options), which
runs a sensitivity study or, with ``--from-mlflow``, re-plots one. The studies and their figures
are in :mod:`analysis.studies`, running them in :mod:`tuner.study`.
"""

from __future__ import annotations

import sys

from tuner import study

PROG = "python -m analysis.sensitivity"


def build_parser():
    return study.build_parser(PROG)


def main(argv: list[str] | None = None) -> dict:
    return study.main(argv, prog=PROG)


if __name__ == "__main__":
    main(sys.argv[1:])

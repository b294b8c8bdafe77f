"""Write the generated dashboards, their README list and docs/dashboards.md (``make dashboards``).

    python -m tools.dashboards            # write the files
    python -m tools.dashboards --check    # exit 1 if a committed file is stale

How the dashboards are built, and how to add a panel: ``tools/dashboards/__init__.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import write_generated
from . import ROOT, generated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.dashboards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    parser.add_argument("--check", action="store_true", help="fail if a committed file is out of date")
    args = parser.parse_args(argv)
    return write_generated(args.root, generated(args.root), check=args.check, make_target="dashboards")


if __name__ == "__main__":
    sys.exit(main())

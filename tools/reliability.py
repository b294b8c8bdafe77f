"""Renders docs/reliability.md from the fault suite's measurements (``make reliability``).

    PGPERF_FAULT_RESULTS=faults.json pytest -m faults
    python -m tools.reliability faults.json docs/reliability.md
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

INTRO = """# Reliability

pgperf runs beside production databases: it must never make an incident worse, never lose
a sample it accepted and never leak a secret. `tests/test_faults.py` injects each fault
below into real processes (PostgreSQL clusters, pgperf, its store) and checks, for each:

- `pg_up` is 0 within one sampling interval, with `pgperf_connection_error{kind=...}`
  naming the kind of error, while `/metrics` keeps answering and `/readyz` says 503;
- pgperf's backends on the monitored server never exceed its pool size;
- no sample is lost: samples taken = rows stored + samples spooled + samples dropped at the
  spool's bound (dropped is 0 unless the bound is the fault);
- the log says what happened, once, and holds none of the suite's passwords (checked on
  everything the suite logged, as printed and raw);
- recovery needs no restart.

Sampling every second; pool of 2 connections; the monitoring role is a non-superuser with
`pg_monitor`, connecting with a password; the store is a separate PostgreSQL.
"""


def _fmt(seconds: Any) -> str:
    return "—" if seconds is None else f"{seconds:.2f} s"


def render(results: dict[str, dict[str, Any]]) -> str:
    lines = [INTRO, f"Measured on {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
             f"Python {platform.python_version()} (`make reliability` regenerates this page).", "",
             "| fault | time to detect | time to recover | samples taken | samples lost | notes |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        lost = r["lost"]
        dropped = f" ({r['dropped']} dropped at the bound, counted)" if r.get("dropped") else ""
        lines.append(f"| {name} | {_fmt(r['detect_s'])} | {_fmt(r['recover_s'])} | {r['taken']} | "
                     f"{lost}{dropped} | {r.get('note', '')} |")
    lines += ["", "Time to detect: from the fault to `pg_up` 0 on `/metrics` (for the store, "
              "`pgperf_store_up` 0; for a restart, the new `pg_postmaster_start_time_seconds`; for a "
              "slow collector, its `pg_scrape_collector_success` 0). Time to recover: from the fault's "
              "end to `pg_up` 1 (for the store, the spool written out; for a slow collector, its "
              "`pg_scrape_collector_success` 1). — means the fault has no such "
              "moment: pgperf stays up through it.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: python -m tools.reliability RESULTS.json OUTPUT.md", file=sys.stderr)
        return 2
    results = json.loads(Path(args[0]).read_text())
    Path(args[1]).write_text(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A strict logfmt reader for the tests of pgperf's log lines."""

from __future__ import annotations

import json
import re
from typing import Any

_PAIR = re.compile(r'([^\s="]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?: |$)')


def parse_logfmt(line: str) -> dict[str, Any]:
    """``key=value`` pairs separated by one space, values bare or double-quoted with
    JSON-style escapes; anything else fails, as does a repeated key."""
    fields: dict[str, Any] = {}
    pos = 0
    while pos < len(line):
        match = _PAIR.match(line, pos)
        assert match, f"not logfmt at {pos}: {line!r}"
        key, raw = match.groups()
        assert key not in fields, f"repeated key {key}: {line!r}"
        fields[key] = json.loads(raw) if raw.startswith('"') else raw
        pos = match.end()
    return fields

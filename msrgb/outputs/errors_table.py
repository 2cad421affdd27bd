"""errors.tsv: the inputs that could not be converted (recorded by the shard jobs) and those
planning left out (unreadable folders, clashing outputs), with why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from msrgb.storage import tsv
from msrgb.storage.files import write_atomic

log = logging.getLogger("msrgb")

ERRORS_COLUMNS = ("file", "reason")


def write_errors(
    skipped: Sequence[tuple[str, str]], out: Path, planning: Sequence[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """Write ``errors.tsv`` from the inputs the shards skipped as bad (path, reason) and what
    planning could not convert (``planning``: folders that cannot be read, clashing outputs; a
    header row, then one row per file or folder, sorted; msrgb.storage.tsv quotes names with tabs or
    line breaks); the table has only its header when nothing was skipped."""
    errors = sorted([*skipped, *planning])
    write_atomic(out, tsv.text([ERRORS_COLUMNS, *errors]).encode("utf-8"))
    if errors:
        log.warning("%d input file(s) skipped as bad, listed in %s", len(errors), out)
    return errors


def read_planning_errors(path: Path) -> list[tuple[str, str]]:
    """What planning could not convert (msrgb.planning.prepare.find_sources), as written in ``path``."""
    try:
        rows = list(tsv.rows(path))
    except FileNotFoundError:
        return []
    return [(row[0], row[1]) for row in rows[1:] if len(row) >= 2]


def problems_note(problems: Sequence[tuple[str, str]]) -> str:
    """One line on what planning found it cannot convert."""
    shown = "; ".join(f"{rel}: {reason}" for rel, reason in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return f"{len(problems)} input(s) or folder(s) not converted, listed in errors.tsv: {shown}{more}"

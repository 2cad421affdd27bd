"""What a run made: the table of skipped inputs, from the shard state files."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from msrgb.convert import write_atomic
from msrgb.plan import read_state_full

log = logging.getLogger("msrgb")

ERRORS_HEADER = "file\treason"


def collect_errors(states: Iterable[Path]) -> list[tuple[str, str]]:
    """(input path relative to input_dir, reason) of every input skipped as bad, sorted."""
    errors: dict[str, str] = {}
    for state in states:
        errors.update({rel: reason for rel, (_, _, reason) in read_state_full([state])[1].items()})
    return sorted(errors.items())


def write_errors(states: Iterable[Path], out: Path) -> list[tuple[str, str]]:
    """Write ``errors.tsv`` (a header line, then one tab-separated line per skipped file);
    the table has only its header when nothing was skipped."""
    errors = collect_errors(states)
    lines = [ERRORS_HEADER, *(f"{rel}\t{reason}" for rel, reason in errors)]
    write_atomic(out, ("\n".join(lines) + "\n").encode("utf-8"))
    if errors:
        log.warning("%d input file(s) skipped as bad, listed in %s", len(errors), out)
    return errors

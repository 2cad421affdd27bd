"""Tab-separated files that hold any file name: a field with a tab, a line break (\\n or \\r) or
a double quote is quoted, as Python's ``csv`` module (dialect ``excel-tab``) and spreadsheet
programs read it; every other line is plain ``a<TAB>b``. pandas reads them with
``pd.read_csv(path, sep="\\t")``, R with ``read.delim``."""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def without_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused while 100,000s of rows are read or made: they hold no
    cycles, and the full collections their objects set off scan everything the process holds
    (in Snakemake's process, over 100,000 objects) again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Dialect(csv.excel_tab):
    lineterminator = "\n"


_SPECIAL = re.compile(r'[\t\n\r"]')
_QUOTED = re.compile(r'[\n\r"]')


def field(value: object) -> str:
    """One field as written: quoted if it holds a tab, a line break or a double quote."""
    # (csv's own writer leaves a lone \r unquoted when lines end in \n, which breaks the row)
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if _SPECIAL.search(text) else text


def line(fields: Sequence[object]) -> str:
    """One row, with its line end."""
    plain = "\t".join(map(str, fields))
    if plain.count("\t") == len(fields) - 1 and not _QUOTED.search(plain):
        return plain + "\n"  # no field to quote (almost every row)
    return "\t".join(map(field, fields)) + "\n"


def text(rows: Iterable[Sequence[object]]) -> str:
    """The rows as :func:`line` writes each. Made in one piece and checked once for a field to
    quote (a tab, line break or quote more than the rows' own): half the time of a check per
    row for the 100,000s of rows of states and manifests."""
    rows = rows if isinstance(rows, list) else list(rows)
    plain = plain_text(["\t".join(map(str, fields)) for fields in rows], sum(map(len, rows)))
    return plain if plain is not None else "".join(map(line, rows))


def plain_text(lines: list[str], fields: int) -> str | None:
    """``lines`` (rows of ``fields`` fields in all, each joined by tabs, without line ends) as
    :func:`text` writes them, where no field needs quoting: joined, each with its line end;
    None where one does (a tab or line break more than the rows' own, a quote, a carriage
    return). Callers that make 100,000s of rows build their lines themselves, then check once."""
    if not lines:
        return ""
    body = "\n".join(lines)
    plain = body.count("\t") == fields - len(lines) and body.count("\n") == len(lines) - 1
    return body + "\n" if plain and '"' not in body and "\r" not in body else None


def rows(path: Path) -> Iterator[list[str]]:
    """The rows of a file written with :func:`line` or :func:`text` (blank lines skipped)."""
    with open(path, encoding="utf-8", newline="") as fh:
        yield from _rows(fh)


def rows_of(content: str) -> Iterator[list[str]]:
    return _rows(io.StringIO(content, newline=""))


def _rows(lines: Iterator[str]) -> Iterator[list[str]]:
    """Lines without a quote or carriage return (almost all) are split at their tabs; from the
    first line with one on, the ``csv`` module reads the rest (a quoted field may hold line
    breaks). Split this way, the rows of a state file take about half the time."""
    for text in lines:
        if '"' in text or "\r" in text:
            for row in csv.reader(itertools.chain([text], lines), _Dialect):
                if row:
                    yield row
            return
        text = text[:-1] if text.endswith("\n") else text
        if text:
            yield text.split("\t")

"""Tab-separated files that hold any file name: fields with a tab, a line break or a leading
double quote are quoted, as Python's ``csv`` module (dialect ``excel-tab``) and spreadsheet
programs do; every other line is plain ``a<TAB>b``. pandas reads them with
``pd.read_csv(path, sep="\\t")``, R with ``read.delim``."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path


class _Dialect(csv.excel_tab):
    lineterminator = "\n"


def line(fields: Sequence[object]) -> str:
    """One row, with its line end."""
    out = io.StringIO()
    csv.writer(out, _Dialect).writerow(fields)
    return out.getvalue()


def text(rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    csv.writer(out, _Dialect).writerows(rows)
    return out.getvalue()


def rows(path: Path) -> Iterator[list[str]]:
    """The rows of a file written with :func:`line` or :func:`text` (blank lines skipped)."""
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh, _Dialect):
            if row:
                yield row


def rows_of(content: str) -> Iterator[list[str]]:
    for row in csv.reader(io.StringIO(content, newline=""), _Dialect):
        if row:
            yield row

"""Reading a product's provenance manifest (``<product>/manifest.tsv``, written by the summary
job): one row per image with its source's and its own SHA-256."""

from __future__ import annotations

from pathlib import Path

from msrgb.storage import tsv


def read_provenance_manifest(path: Path) -> list[dict[str, str]]:
    """The rows of a provenance manifest: comment rows, the column names (first column
    ``path``), then one row per image (msrgb.storage.tsv: names with tabs or line breaks are
    quoted)."""
    columns: list[str] | None = None
    rows = []
    for row in tsv.rows(path):
        if columns is not None:
            rows.append(dict(zip(columns, row)))
        elif row[0] == "path":
            columns = row
    return rows


def read_envs(path: Path) -> dict[str, str]:
    """The environments of a provenance manifest: id -> library versions."""
    return {row[1]: row[2] for row in tsv.rows(path) if row[0] == "# env" and len(row) > 2}

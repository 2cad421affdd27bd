"""TODO docstring."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from msrgb.outputs.paths import OutputPaths
from msrgb.sources.discovery import Source, rows_text
from msrgb.storage import tsv

if TYPE_CHECKING:  # drawing loads Pillow and numpy; planning the sheets does without them
    pass


@dataclass(frozen=True)
class SheetGeometry:
    """Geometry of a sheet: square thumbnails of ``thumb`` px in ``columns`` columns, a label
    line under each, a title line on top."""

    thumb: int = 128
    columns: int = 10
    gap: int = 6
    label: int = 14
    title: int = 22

    @property
    def cell_w(self) -> int:
        return self.thumb + self.gap

    @property
    def cell_h(self) -> int:
        return self.thumb + self.label + self.gap

    def size(self, n: int, columns: int | None = None) -> tuple[int, int]:
        """(width, height) in pixels of a sheet of ``n`` tiles."""
        cols = max(1, min(columns or self.columns, n))
        rows = max(1, -(-n // cols))
        return self.gap + cols * self.cell_w, self.title + self.gap + rows * self.cell_h

    def origin(self, i: int, columns: int | None = None) -> tuple[int, int]:
        """Top-left pixel (x, y) of thumbnail ``i``."""
        cols = columns or self.columns
        row, col = divmod(i, cols)
        return self.gap + col * self.cell_w, self.title + self.gap + row * self.cell_h


def sheet_list_text(title: str, members: Sequence[Source], digest: str, geometry: SheetGeometry) -> str:
    return tsv.text([["# contact sheet", title, digest, geometry]]) + rows_text(members, with_files=False)


def read_sheet_list(path: Path) -> tuple[str, list[str]]:
    title, rels = "", []
    for row in tsv.rows(path):
        if row[0] == "# contact sheet":
            title = row[1]
        else:
            rels.append(row[0])
    return title, rels


def sheet_list_folder(output: OutputPaths, product: str) -> Path:
    return output.state_root / "sheets" / product


def sheet_list_path(output: OutputPaths, product: str, sheet: str) -> Path:
    return sheet_list_folder(output, product) / f"{sheet}.tsv"


def sheet_names(output: OutputPaths, product: str) -> list[str]:
    """Names of the sheets of ``product``, from the sheet lists :func:`write_sheet_lists`
    wrote (for jobs started elsewhere, which read the plan the run wrote)."""
    folder = sheet_list_folder(output, product)
    return sorted(f.stem for f in folder.glob("*.tsv")) if folder.is_dir() else []


def cells_path(sheet_list: Path) -> Path:
    """Where the cells of the sheet of ``sheet_list`` are listed (:class:`Cells`): beside the
    sheet_list, so that the sheet itself stays the same bytes whatever made it."""
    return sheet_list.with_suffix(".cells")

"""Contact sheets in the output folder: the geometry of a sheet, its list of images (written when
the run starts, the sheet redrawn when the list changes), the list of its cells beside it, and
the names and labels of sheets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from msrgb.outputs.paths import OutputPaths
from msrgb.sources.discovery import Source, rows_text
from msrgb.sources.hashing import path_hash
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


ROOT_FOLDER = "_top"  # sheet name for files directly in input_dir


def folder_key(rel: str) -> str:
    """The sheet a file belongs to: its folder, with '/' written as '__'. A folder name with
    characters that cannot be part of a Snakemake output ({ } < > backslash, control
    characters) gets them replaced by '_' and a short hash of the real name appended."""
    folder = rel.rpartition("/")[0]
    if not folder:
        return ROOT_FOLDER
    key = folder.replace("/", "__")
    safe = "".join(c if c.isprintable() and c not in "{}<>\\" else "_" for c in key)
    if len(safe.encode("utf-8")) > MAX_KEY_BYTES:
        # a deep or long path: the start of its name and a hash of all of it, so that the sheet's
        # files (<key>.png, <key>.tsv) fit the file system's 255 bytes and stay unique
        short = safe.encode("utf-8")[: MAX_KEY_BYTES - 17].decode("utf-8", "ignore")
        return f"{short}-{path_hash(folder):016x}"
    return safe if safe == key else f"{safe}-{path_hash(folder) & 0xFFFFFF:06x}"


#: the longest sheet name in bytes: with a suffix and a temporary file's, under NAME_MAX (255)
MAX_KEY_BYTES = 200


def label(rel: str) -> str:
    """The file name as drawn under a thumbnail: control characters (a line break) as '?'."""
    return "".join(c if c.isprintable() else "?" for c in rel.rpartition("/")[2])

"""What each exported image is labelled: its class folder (EuroSAT), the labels of a
BigEarthNet patch's ``*_labels_metadata.json``, or a table given as ``export.labels``."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from msrgb.errors import ExportError

#: BigEarthNet's file of a patch's labels, beside its band files
BIGEARTHNET_LABELS = "_labels_metadata.json"
#: the names of the image column and the labels column a labels table may use
ID_COLUMNS = ("id", "image", "file_name", "filename", "path", "name", "patch_id", "patch")
LABEL_COLUMNS = ("labels", "label", "class", "classes")


@dataclass(frozen=True)
class Example:
    """One exported image."""

    #: the run's image, relative to the product folder (``Forest/Forest_1.png``)
    image: str
    #: the input it was made from, relative to ``input_dir``
    source: str
    labels: tuple[str, ...]
    sha256: str

    @property
    def stem(self) -> str:
        return PurePosixPath(self.image).stem

    @property
    def id(self) -> str:
        """The image's path without its suffix, which names it in every file of the export."""
        return self.image[: self.image.rfind(".")] if "." in PurePosixPath(self.image).name else self.image


@dataclass(frozen=True)
class Labelled:
    """The images with their labels, and whether an image may have several."""

    examples: list[Example]
    multi_label: bool
    #: where the labels come from, in words, for the dataset card
    origin: str

    @property
    def classes(self) -> list[str]:
        """The class names in index order (sorted, as ImageFolder loaders sort folders)."""
        return sorted({label for e in self.examples for label in e.labels})


def label_examples(rows: Sequence[tuple[str, str, str]], table: str, input_dir: Path | None) -> Labelled:
    """Label the (image, source, sha256) ``rows`` from ``table`` (a file), BigEarthNet's
    metadata files beside the inputs, or else the class folders."""
    if table:
        labels, multi = read_table(Path(table), [PurePosixPath(image).stem for image, _, _ in rows])
        examples = [Example(i, s, labels[PurePosixPath(i).stem], h) for i, s, h in rows]
        return Labelled(examples, multi, f"the table {Path(table).name}")
    found = _bigearthnet_labels([s for _, s, _ in rows], input_dir)
    if found is not None:
        examples = [Example(i, s, found[s], h) for i, s, h in rows]
        return Labelled(examples, True, f"each patch's *{BIGEARTHNET_LABELS} (BigEarthNet)")
    examples = []
    for image, source, sha in rows:
        if "/" not in image:
            raise ExportError(
                f"export: {image} is not in a class folder: put the images in one folder per class "
                "(class/name.tif) or give 'export.labels', a table of labels per image"
            )
        examples.append(Example(image, source, (image.split("/", 1)[0],), sha))
    return Labelled(examples, False, "the top folder of each input (its class folder)")


def _bigearthnet_labels(sources: Sequence[str], input_dir: Path | None) -> dict[str, tuple[str, ...]] | None:
    """The labels of each band folder from its ``*_labels_metadata.json``; None where no input
    folder has one. Every folder must have one once any has."""
    if input_dir is None or not sources:
        return None
    found: dict[str, tuple[str, ...]] = {}
    missing = []
    for source in sources:
        folder = input_dir / source
        names = sorted(n for n in _names(folder) if n.endswith(BIGEARTHNET_LABELS))
        if not names:
            missing.append(source)
            continue
        path = folder / names[0]
        try:
            labels = json.loads(path.read_text(encoding="utf-8"))["labels"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ExportError(f"export: {path}: cannot be read as BigEarthNet labels ({exc})") from None
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ExportError(f"export: {path}: 'labels' is not a list of names")
        found[source] = tuple(sorted(set(labels)))
    if not found:
        return None
    if missing:
        raise ExportError(
            f"export: {len(missing)} of {len(sources)} image folder(s) have no *{BIGEARTHNET_LABELS} "
            f"(first: {missing[0]}), though the others do; add them or give 'export.labels'"
        )
    return found


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (NotADirectoryError, FileNotFoundError):
        return []


def read_table(path: Path, stems: Sequence[str]) -> tuple[dict[str, tuple[str, ...]], bool]:
    """Labels by image stem from a CSV or TSV table with a header: an image column (its name,
    path or id, any suffix) and a labels column (names separated by ``;`` or ``|``, or a JSON
    list). Returns the labels of every stem in ``stems`` and whether the table is multi-label
    (a ``labels`` column, or a row with other than one label)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"config 'export.labels': {path} cannot be read ({exc})") from None
    dialect = "excel-tab" if "\t" in text.split("\n", 1)[0] else "excel"
    rows = list(csv.reader(text.splitlines(), dialect))
    if len(rows) < 2 or len(rows[0]) < 2:
        raise ExportError(f"config 'export.labels': {path} needs a header and an image and a labels column")
    header = [h.strip().lower() for h in rows[0]]
    id_col = next((header.index(c) for c in ID_COLUMNS if c in header), 0)
    label_col = next((header.index(c) for c in LABEL_COLUMNS if c in header), 1 if id_col == 0 else 0)
    table: dict[str, tuple[str, ...]] = {}
    for n, row in enumerate(rows[1:], 2):
        if not row or not "".join(row).strip():
            continue
        if len(row) <= max(id_col, label_col):
            raise ExportError(f"config 'export.labels': {path} line {n} has {len(row)} column(s)")
        stem = PurePosixPath(row[id_col].strip().replace("\\", "/")).stem
        table[stem] = _split_labels(row[label_col])
    missing = [s for s in stems if s not in table]
    if missing:
        raise ExportError(
            f"config 'export.labels': {path} has no row for {len(missing)} image(s) (first: {missing[0]})"
        )
    multi = header[label_col] in ("labels", "classes") or any(len(table[s]) != 1 for s in stems)
    return {s: table[s] for s in stems}, multi


def _split_labels(cell: str) -> tuple[str, ...]:
    cell = cell.strip()
    if cell.startswith("["):
        try:
            values = json.loads(cell)
        except ValueError:
            values = None
        if isinstance(values, list):
            return tuple(sorted({str(v).strip() for v in values if str(v).strip()}))
    for sep in (";", "|"):
        if sep in cell:
            return tuple(sorted({v.strip() for v in cell.split(sep) if v.strip()}))
    return (cell,) if cell else ()

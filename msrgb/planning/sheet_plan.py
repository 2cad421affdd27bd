"""Which images go on which contact sheet: one sheet per folder (its first ``contact_sheet_tiles``
images by name, numbers in names counted as numbers) and an overview (images chosen by path
hash), each written as a sheet list when the run starts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from msrgb.config.products import Product
from msrgb.outputs.paths import OutputPaths
from msrgb.outputs.sheet_lists import (
    SheetGeometry,
    cells_path,
    folder_key,
    sheet_list_folder,
    sheet_list_path,
    sheet_list_text,
)
from msrgb.sources.discovery import Source, first_by_name
from msrgb.sources.hashing import hash_sample
from msrgb.storage.files import write_if_changed


def choose(sources: Sequence[Source], per_folder: int, overview: int) -> tuple[dict[str, list[Source]], list[Source]]:
    """The members of every folder sheet (the first ``per_folder`` files by name, numbers as numbers;
    0 = all) and of the overview (the ``overview`` files of each folder with the smallest path
    hashes)."""
    by_folder: dict[str, list[Source]] = defaultdict(list)
    keys: dict[str, str] = {}  # folder -> its key, worked out once per folder
    for s in sources:
        folder = s.rel.rpartition("/")[0]
        key = keys.get(folder)
        if key is None:
            key = keys[folder] = folder_key(s.rel)
        by_folder[key].append(s)
    sheets = {k: [v[i] for i in first_by_name([s.rel for s in v], per_folder)] for k, v in sorted(by_folder.items())}
    picks = []
    for _, members in sorted(by_folder.items()):
        picks += hash_sample(members, overview)
    return sheets, picks


def plan_sheets(
    products: Sequence[Product],
    sources: Sequence[Source],
    per_folder: int,
    overview: int,
    geometry: SheetGeometry,
) -> dict[str, dict[str, str]]:
    """The sheet_list of every contact sheet: product name -> sheet name -> sheet list text."""
    folders, picks = choose(sources, per_folder, overview)
    planned: dict[str, dict[str, str]] = {}
    for p in products:
        sheets = planned[p.name] = {}
        for key, members in folders.items():
            title = f"{key.replace('__', '/')} ({len(members)} shown) - {p.name}"
            sheets[key] = sheet_list_text(title, members, p.digest(), geometry)
        sheets["overview"] = sheet_list_text(f"overview - {p.name}", picks, p.digest(), geometry)
    return planned


def write_sheet_lists(output: OutputPaths, planned: dict[str, dict[str, str]]) -> None:
    """Write the sheet sheet_lists whose content changed, and delete those of folders that are
    gone."""
    for product, sheets in planned.items():
        old = sheet_list_folder(output, product)
        for stale in old.glob("*.tsv") if old.is_dir() else []:
            if stale.stem not in sheets:  # its folder is gone
                stale.unlink()
                cells_path(stale).unlink(missing_ok=True)
        for key, text in sheets.items():
            write_if_changed(sheet_list_path(output, product, key), text)

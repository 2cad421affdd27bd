"""TODO docstring."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from msrgb.config.products import Product
from msrgb.outputs.paths import OutputPaths
from msrgb.outputs.sheet_lists import (
    SheetGeometry,
    cells_path,
    sheet_list_folder,
    sheet_list_path,
    sheet_list_text,
)
from msrgb.planning.sharding import hash_sample, path_hash
from msrgb.sources.discovery import Source
from msrgb.storage.files import write_if_changed

if TYPE_CHECKING:  # drawing loads Pillow and numpy; planning the sheets does without them
    pass


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


def choose(sources: Sequence[Source], per_folder: int, overview: int) -> tuple[dict[str, list[Source]], list[Source]]:
    """The members of every folder sheet (the first ``per_folder`` files by name; 0 = all) and
    of the overview (the ``overview`` files of each folder with the smallest path hashes)."""
    by_folder: dict[str, list[Source]] = defaultdict(list)
    keys: dict[str, str] = {}  # folder -> its key, worked out once per folder
    for s in sources:
        folder = s.rel.rpartition("/")[0]
        key = keys.get(folder)
        if key is None:
            key = keys[folder] = folder_key(s.rel)
        by_folder[key].append(s)
    sheets = {k: (v if per_folder == 0 else v[:per_folder]) for k, v in sorted(by_folder.items())}
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

"""Which images go on which contact sheet: one sheet per folder (its first ``contact_sheet_tiles``
images by name, numbers in names counted as numbers) and an overview (images chosen by path
hash), each written as a sheet list when the run starts.
"""

from __future__ import annotations

import heapq
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

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
from msrgb.sources.discovery import Source, name_order
from msrgb.sources.hashing import hash_sample
from msrgb.storage.files import write_if_changed


def first_by_name(members: Sequence[Source], n: int) -> list[Source]:
    """The first ``n`` of ``members`` (sorted by name as text) in
    :func:`msrgb.sources.discovery.name_order`; 0 = all."""
    rels = [s.rel for s in members]
    numbers = _numbers_alone(rels)
    keys: list[Any] = numbers if numbers is not None else list(map(name_order, rels))
    if n == 0 or n >= len(members):
        order = sorted(range(len(members)), key=keys.__getitem__)
    else:
        order = heapq.nsmallest(n, range(len(members)), key=keys.__getitem__)
    return [members[i] for i in order]


_ONE_NUMBER = re.compile(r"([^0-9]*)([0-9]+)([^0-9]*)").fullmatch


def _numbers_alone(rels: Sequence[str]) -> list[int] | None:
    """The number in each of ``rels`` where every one is the same text, a number and the same
    text again (``Forest/Forest_12.tif``): their order is that of these numbers, found with a
    few operations on all the names at once; else None."""
    one = _ONE_NUMBER(rels[0]) if rels else None
    if one is None:
        return None
    head, _, tail = one.groups()
    joined = "\n".join(rels)
    glue = tail + "\n" + head
    middle = joined.replace(glue, "\n")
    if not (middle.startswith(head) and middle.endswith(tail)):
        return None
    digits = middle[len(head) : len(middle) - len(tail)].split("\n")
    # one number a name (none holds a line break), and the names made again of them are the names
    numbers = "".join(digits)
    if len(digits) != len(rels) or "" in digits or not (numbers.isascii() and numbers.isdecimal()):
        return None
    if head + glue.join(digits) + tail != joined:
        return None
    return list(map(int, digits))


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
    sheets = {k: first_by_name(v, per_folder) for k, v in sorted(by_folder.items())}
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

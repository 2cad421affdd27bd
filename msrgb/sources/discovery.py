"""Finding the input images: every stacked TIFF, or every folder of band files, under the
input folder, with a fingerprint (size, modification time) of each; and the inputs whose
outputs would clash."""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any, NamedTuple

from msrgb.errors import PlanError
from msrgb.sources import bandfiles, parallel_walk
from msrgb.sources.stac import StacItems, discover_items
from msrgb.storage import tsv
from msrgb.storage.files import TIFF_SUFFIXES, Problems, output_rel
from msrgb.storage.listing import list_objects
from msrgb.storage.locations import S3Path


class Source(NamedTuple):
    """One input image: its path relative to the input folder (POSIX form), size and mtime.

    An image made of band files (``layout: band_folders``) is its folder's path, with ``files``
    the (band, path relative to the input folder) to read; its ``size`` and ``mtime_ns`` are a
    fingerprint of all its band files (:func:`msrgb.sources.bandfiles.fingerprint`). A named tuple:
    planning makes one per input, 100,000s of them, at a third of a frozen dataclass's cost."""

    rel: str
    size: int
    mtime_ns: int
    files: tuple[tuple[str, str], ...] | None = None

    def png_rel(self) -> str:
        """The PNG path relative to a product folder: same folders, ``.png`` suffix."""
        return output_rel(self.rel)


_NUMBERS = re.compile(r"([0-9]+)").split


def name_order(rel: str) -> tuple[str | int, ...]:
    """The sort key of a path in the order people number files: the runs of digits (0-9) in it
    counted as numbers (``tile_9`` before ``tile_10``), the rest as text. Paths of equal keys
    (``tile_07``, ``tile_7``) are to be ordered by their text."""
    parts: list[str | int] = list(_NUMBERS(rel))
    if len(parts) == 3:  # one number in the path (``Forest/Forest_12.tif``): made directly
        return parts[0], int(parts[1]), parts[2]
    parts[1::2] = [int(digits) for digits in parts[1::2]]
    return tuple(parts)


def first_by_name(names: Sequence[str], n: int) -> list[int]:
    """The indices of the first ``n`` of ``names`` (0: all) in :func:`name_order`, names of equal
    keys in text order, without a key made for every name where the names allow it: names of one
    shape are ordered by their numbers alone; else only the names whose text before the first
    number comes first can be among the ``n`` first (a dataset's images may all tie in a list)."""
    keys: Any = _numbers_alone(names)  # name index -> its sort key
    pool: Sequence[int] = range(len(names))
    if keys is None:
        pruned = 0 < n < len(names)
        if pruned:
            pool = _first_texts(names, n)
        chosen = [names[i] for i in pool]
        numbers = _numbers_alone(chosen) if pruned else None
        keys = dict(zip(pool, numbers if numbers is not None else map(name_order, chosen)))
    pool = sorted(pool, key=names.__getitem__)  # equal keys in text order (names in text order: at once)
    if n == 0 or n >= len(pool):
        return sorted(pool, key=keys.__getitem__)
    return heapq.nsmallest(n, pool, key=keys.__getitem__)


_ONE_NUMBER = re.compile(r"([^0-9]*)([0-9]+)([^0-9]*)").fullmatch


def _numbers_alone(names: Sequence[str]) -> list[int] | None:
    """The number in each of ``names`` where every one is the same text, a number and the same
    text again (``Forest/Forest_12.tif``): their order is that of these numbers, found with a
    few operations on all the names at once; else None."""
    one = _ONE_NUMBER(names[0]) if names else None
    if one is None:
        return None
    head, _, tail = one.groups()
    if not (names[-1].startswith(head) and names[-1].endswith(tail)):  # (names of several shapes: at once)
        return None
    joined = "\n".join(names)
    glue = tail + "\n" + head
    middle = joined.replace(glue, "\n")
    if not (middle.startswith(head) and middle.endswith(tail)):
        return None
    digits = middle[len(head) : len(middle) - len(tail)].split("\n")
    # one number a name (none holds a line break), and the names made again of them are the names
    numbers = "".join(digits)
    if len(digits) != len(names) or "" in digits or not (numbers.isascii() and numbers.isdecimal()):
        return None
    if head + glue.join(digits) + tail != joined:
        return None
    return list(map(int, digits))


_FROM_FIRST_DIGIT = re.compile(r"[0-9].*")


def _first_texts(names: Sequence[str], n: int) -> list[int]:
    """The indices of those of ``names`` that may be among the ``n`` first in :func:`name_order`,
    which orders names first by their text before the first digit: the names of the fewest
    smallest such texts that hold ``n`` names, found for all the names at once. Names with line
    breaks: all."""
    heads = _FROM_FIRST_DIGIT.sub("", "\n".join(names)).split("\n")
    if len(heads) != len(names):
        return list(range(len(names)))
    counts, taken, enough = Counter(heads), set(), 0
    for head in sorted(counts):
        if enough >= n:
            break
        taken.add(head)
        enough += counts[head]
    return [i for i, head in enumerate(heads) if head in taken]


def rows_text(sources: Sequence[Source], with_files: bool = True) -> str:
    """The rows ``rel, size, mtime_ns`` (then, ``with_files``, ``bands`` and band, path, ...
    for band files) of ``sources`` as :func:`msrgb.storage.tsv.text` writes them, made without a
    per-field check when no name needs quoting (planning makes manifests of 100,000s of
    inputs every time)."""
    lines, fields = [], 0
    for rel, size, mtime, files in sources:
        if files is None or not with_files:
            lines.append(f"{rel}\t{size}\t{mtime}")
            fields += 3
        else:
            lines.append("\t".join([f"{rel}\t{size}\t{mtime}\tbands", *chain.from_iterable(files)]))
            fields += 4 + 2 * len(files)
    plain = tsv.plain_text(lines, fields)
    if plain is not None:
        return plain
    return tsv.text([s.rel, s.size, s.mtime_ns, *(_files_fields(s.files) if with_files else ())] for s in sources)


def _files_fields(files: tuple[tuple[str, str], ...] | None) -> list[str]:
    """The band files of an image in a manifest row: ``bands``, then band, path, band, path..."""
    return [] if files is None else ["bands", *(x for pair in files for x in pair)]


def discover(
    input_dir: Path | S3Path, with_stat: bool = True, problems: Problems | None = None, processes: int | None = None
) -> list[Source]:
    """Every ``.tif``/``.tiff`` (any case) under ``input_dir``, recursively, sorted by relative
    path. Hidden files and folders (names starting with ``.``) are skipped. Symbolic links to
    files are followed; links to folders are not (no cycles). Folders that cannot be read go to
    ``problems`` (see :func:`msrgb.storage.files.folder_entries`). Under an ``s3://`` prefix: one
    paginated LIST. A large local folder's files are asked for their size and time by up to
    ``processes`` processes (:func:`msrgb.sources.parallel_walk.stacked_rows`)."""
    found: list[Source] = []
    if isinstance(input_dir, S3Path):
        found = [
            Source(o.rel, o.size, o.mtime_ns)
            for o in list_objects(input_dir)
            if o.rel.lower().endswith(TIFF_SUFFIXES) and not any(p[:1] in (".", "") for p in o.rel.split("/"))
        ]
        found.sort(key=lambda s: s.rel)
        if problems is None:
            check_names(found)
        return found
    if not input_dir.is_dir():
        raise PlanError(f"input_dir {str(input_dir)!r} does not exist or is not a folder")
    found = [Source(*row) for row in parallel_walk.stacked_rows(str(input_dir), with_stat, problems, processes)]
    found.sort(key=attrgetter("rel"))
    if problems is None:
        check_names(found)
    return found


LAYOUTS = ("stacked", "band_folders")


@dataclass(frozen=True)
class InputFormat:
    """How the input images are stored: ``stacked`` (one file holds all bands of an image) or
    ``band_folders`` (a folder per image, one file per band, named by ``band_pattern``)."""

    layout: str = "stacked"
    band_pattern: str = bandfiles.DEFAULT_BAND_PATTERN

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise PlanError(f"config 'layout': {self.layout!r} is not one of {list(LAYOUTS)}")
        bandfiles.compile_pattern(self.band_pattern)

    def to_dict(self) -> dict[str, str]:
        return {"layout": self.layout, "band_pattern": self.band_pattern}


def discover_inputs(
    input_dir: Path | S3Path | StacItems,
    input_format: InputFormat,
    needed_bands: Iterable[str] = (),
    with_stat: bool = True,
    problems: Problems | None = None,
    processes: int | None = None,
) -> list[Source]:
    """The images under ``input_dir`` (see :func:`discover`, and :mod:`msrgb.sources.bandfiles` for
    band folders, whose sources list the files of the ``needed_bands``), sorted by path;
    folders that cannot be read go to ``problems``. A large local input folder (band folders
    or stacked TIFFs) is walked by up to ``processes`` processes (:mod:`msrgb.sources.parallel_walk`)."""
    if isinstance(input_dir, StacItems):
        found = sorted((Source(*item) for item in discover_items(input_dir, needed_bands, problems)), key=lambda s: s.rel)
        if problems is None:
            check_names(found)
        return found
    if input_format.layout == "stacked":
        return discover(input_dir, with_stat, problems, processes)
    needed = sorted(set(needed_bands))
    if isinstance(input_dir, S3Path):
        pattern = bandfiles.compile_pattern(input_format.band_pattern)
        listing = ((o.rel, o.size, o.mtime_ns) for o in list_objects(input_dir))
        images = bandfiles.images_from_listing(listing, pattern, input_dir.name, problems)
        found = [Source(*bandfiles.image_row(image, needed)) for image in images]
    elif not input_dir.is_dir():
        raise PlanError(f"input_dir {str(input_dir)!r} does not exist or is not a folder")
    else:
        start = len(problems) if problems is not None else 0
        rows = parallel_walk.image_rows(str(input_dir), input_format.band_pattern, needed, with_stat, problems, processes)
        found = [Source(*row) for row in rows]
        if problems is not None:  # the same order however the walk was shared
            problems[start:] = sorted(problems[start:])
    found.sort(key=lambda s: s.rel)
    if problems is None:
        check_names(found)
    return found


def find_clashes(sources: Iterable[Source], suffixes: Iterable[str] = (".png",)) -> list[tuple[str, str, str]]:
    """Pairs of inputs whose outputs cannot both exist, with why: the same output (``a.tif`` and
    ``a.tiff``), or one's output is a folder the other's output needs (``a.tif`` next to a
    folder ``a.png/`` holding ``b.tif``)."""
    sources = list(sources)
    suffixes = sorted(set(suffixes))
    if not _may_clash([s.rel for s in sources], suffixes):
        return []
    clashes = []
    for suffix in suffixes:
        outputs: dict[str, str] = {}
        for s in sources:
            key = output_rel(s.rel, suffix)
            if key in outputs:
                clashes.append((outputs[key], s.rel, f"both map to {key}"))
            else:
                outputs[key] = s.rel
        folders: dict[str, str] = {}  # a folder the outputs need -> an input under it
        for key, rel in outputs.items():
            folder = key.rpartition("/")[0]
            while folder and folder not in folders:  # its parents are in already when it is
                folders[folder] = rel
                folder = folder.rpartition("/")[0]
        for key, rel in outputs.items():
            if key in folders:
                clashes.append(
                    (rel, folders[key], f"clash: {key} would have to be both an image and a folder")
                )
    return clashes


#: the suffixes output_rel takes off an input's name, at the end of each line: TIFF (any case)
#: and a product's .SAFE (no letter but ASCII's is, in lower case, one of their letters)
_TAKEN_OFF = re.compile(r"\.(?:[tT][iI][fF][fF]?|[sS][aA][fF][eE])$", re.MULTILINE)


def _may_clash(rels: Sequence[str], suffixes: Sequence[str]) -> bool:
    """False when no two of ``rels`` can clash (:func:`find_clashes`), found with a few
    operations on all the names at once: every output is its input's name without the suffix
    :func:`output_rel` takes off, plus the product's suffix, so two outputs are the same only
    when two such names are (a name with line breaks gives several lines, the same ones for
    both names); and an output can be a folder of another only when a folder's name ends with a
    product's suffix."""
    joined = "\n".join(rels)
    names = _TAKEN_OFF.sub("", joined).split("\n")
    return len(set(names)) != len(names) or any(f"{suffix}/" in joined for suffix in suffixes)


def clash_text(first: str, second: str, why: str) -> str:
    """One clash for a message; an image named after the input folder itself (band files
    directly in it) can clash with a sub-folder of the same name."""
    if first == second:
        return (
            f"the band files directly in the input folder (an image named {first!r} after the "
            f"folder) and the sub-folder {first!r} {why}"
        )
    return f"{first} and {second} {why}"


def check_names(sources: Iterable[Source], suffixes: Iterable[str] = (".png",)) -> None:
    """Fail when two inputs would write the same output (``a.tif`` and ``a.tiff``) or one's
    output would be a folder of the other's (:func:`find_clashes`)."""
    clashes = find_clashes(sources, suffixes)
    if clashes:
        raise clash_error(clashes)


def clash_error(clashes: Sequence[tuple[str, str, str]]) -> PlanError:
    """The error that refuses a run whose inputs' outputs clash, naming each pair."""
    return PlanError(
        "input files whose outputs clash (the same name with a different suffix, or a file "
        "named like a folder of outputs); rename one of each pair, or set on_error: skip to "
        "convert the others:\n  " + "\n  ".join(clash_text(*c) for c in clashes)
    )


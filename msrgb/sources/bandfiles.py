"""Images made of one file per band (``layout: band_folders``): which folders are images, which
file holds which band, and the finest file of a band kept at several resolutions.

An image is a folder that directly holds band files (``.tif``, ``.tiff``, ``.jp2``) whose stem
ends in a band name (``B04``, ``patch_B04``, ``T29RKH_..._B04_10m``), or a Sentinel-2
``*.SAFE`` product, whose band files are searched under ``GRANULE/*/IMG_DATA`` only (the masks
in ``QI_DATA`` are named after bands too). Only the names are looked at here; the shard jobs
read the files and report a folder that misses a band, has a band twice or mixes grids.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from operator import attrgetter
from typing import NamedTuple

from msrgb.errors import PlanError
from msrgb.storage.files import Problems, folder_entries, size_and_mtime

BAND_SUFFIXES = (".tif", ".tiff", ".jp2")

#: Sentinel-2 band names at the end of a file's stem, optionally with the resolution of a
#: Sentinel-2 L2A product (``_10m``): ``B04``, ``..._B04``, ``..._B04_10m``, ``B8A``.
DEFAULT_BAND_PATTERN = r"(?:^|_)(?P<band>B(?:0[1-9]|1[0-2]|8A))(?:_(?P<res>\d+)m)?$"


class BandFile(NamedTuple):
    """One band file (a tuple: hundreds of thousands are made per run)."""

    band: str
    #: metres per pixel from the name (``_20m``), or 0 when the name does not say
    resolution: int
    #: path relative to the input folder (POSIX form)
    rel: str
    size: int
    mtime_ns: int


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The ``band_pattern`` setting as a regular expression searched in each file's stem; it
    must have a group named ``band`` (and may have one named ``res``, metres per pixel)."""
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise PlanError(f"config 'band_pattern': {pattern!r} is not a regular expression: {exc}") from None
    if "band" not in compiled.groupindex:
        raise PlanError(
            f"config 'band_pattern': {pattern!r} has no group named 'band', as in "
            "(?P<band>B[0-9][0-9A])"
        )
    return compiled


def band_of(name: str, pattern: re.Pattern[str]) -> tuple[str, int] | None:
    """(band, resolution) of a file name, or None if it is not a band file."""
    if not name.lower().endswith(BAND_SUFFIXES):
        return None
    m = pattern.search(name, 0, name.rfind("."))
    if m is None:
        return None
    res = m.group("res") if "res" in pattern.groupindex else None
    return m.group("band").upper(), int(res) if res else 0


_DEFAULT_BANDS = frozenset({f"B{n:02d}" for n in range(1, 13)} | {"B8A"})


def _default_band_of(name: str) -> tuple[str, int] | None:
    """:func:`band_of` with :data:`DEFAULT_BAND_PATTERN`, without the regular expression's
    search from every position of the name (hundreds of thousands of names a run): the band is
    the stem's last ``_``-separated part, or the one before a last part like ``10m``."""
    if not name.lower().endswith(BAND_SUFFIXES):
        return None
    stem = name[: name.rfind(".")]
    if stem[-1:] == "\n":  # "$" also matches before a final line break: the expression decides
        return band_of(name, compile_pattern(DEFAULT_BAND_PATTERN))
    head, _, last = stem.rpartition("_")
    band = last.upper()  # no other letter's capital is an ASCII letter of a band name
    if band in _DEFAULT_BANDS:
        return band, 0
    if last[-1:] in ("m", "M") and last[:-1].isdecimal():  # isdecimal: what \d matches
        band = head.rpartition("_")[2].upper()
        if band in _DEFAULT_BANDS:
            return band, int(last[:-1])
    return None


BandOf = Callable[[str], "tuple[str, int] | None"]


def band_reader(pattern: re.Pattern[str]) -> BandOf:
    """:func:`band_of` for one pattern: for the default one, a faster function of the same
    results. Of a name like ``..._B04.tif``, the band is its part after the last ``_`` alone,
    whatever comes before: those parts' bands are remembered (a dataset's files repeat a few)."""
    default = compile_pattern(DEFAULT_BAND_PATTERN)
    if pattern.pattern != default.pattern or pattern.flags != default.flags:
        return partial(band_of, pattern=pattern)
    known: dict[str, tuple[str, int]] = {}

    def read(name: str) -> tuple[str, int] | None:
        tail = name[name.rfind("_") + 1 :]
        found = known.get(tail)
        if found is None:
            found = _default_band_of(name)
            if found is not None and found[1] == 0 and len(known) < 1024:
                known[tail] = found
        return found

    return read


def is_safe(name: str) -> bool:
    return name.upper().endswith(".SAFE")


#: Sentinel-2 products as ESA's hubs deliver them: S2A_MSIL2A_....SAFE.zip or S2B_MSIL1C_....zip
_ZIPPED = re.compile(r"^S2[A-D]_MSIL(1C|2A)_.*\.zip$", re.IGNORECASE)

#: the pseudo-band of a zipped product in its source's files: ("zip", path of the zip)
ZIP_BAND = "zip"


def is_zipped_product(name: str) -> bool:
    return name[-4:].lower() == ".zip" and bool(_ZIPPED.match(name))


def product_name(zip_name: str) -> str:
    """The ``.SAFE`` folder a zipped product holds: ``X.SAFE.zip`` and ``X.zip`` give ``X.SAFE``."""
    stem = zip_name[: -len(".zip")] if zip_name.lower().endswith(".zip") else zip_name
    return stem if stem.upper().endswith(".SAFE") else f"{stem}.SAFE"


def unzipped_next_to_it(name: str) -> str:
    return f"the unzipped product {product_name(name)} is next to it: the folder is read, the zip left out"


def zipped_image(rel: str, size: int, mtime_ns: int) -> FoundImage:
    """The image of a zipped product at ``rel``: named after the ``.SAFE`` folder it holds,
    read from the zip (msrgb.readers.zipped)."""
    folder, _, name = rel.rpartition("/")
    image = f"{folder}/{product_name(name)}" if folder else product_name(name)
    return FoundImage(image, (BandFile(ZIP_BAND, 0, rel, size, mtime_ns),))


_REL = attrgetter("rel")


def fingerprint(files: Iterable[BandFile]) -> tuple[int, int]:
    """(total size, a 63-bit number that changes when any file's name, size or mtime does): the
    "size" and "mtime" of an image of several files, which decide whether it is up to date."""
    files = sorted(files, key=_REL)
    # one update of the lines of all files: the same digest as an update per line
    text = "".join([f"{f.rel}\0{f.size}\0{f.mtime_ns}\n" for f in files])
    h = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8)
    return sum([max(0, f.size) for f in files]), int.from_bytes(h.digest(), "big") >> 1


def choose(files: Sequence[BandFile], needed: Iterable[str]) -> list[tuple[str, str]]:
    """(band, path) of the files to read for the ``needed`` bands: of a band kept at several
    resolutions, the finest. A band missing, or twice at one resolution, stays that way for the
    shard job to report."""
    wanted = set(needed)
    of_band: dict[str, list[BandFile]] = {}
    for f in files:  # one pass: an image has a dozen files, and a run 100,000s of images
        if f.band in wanted:
            of_band.setdefault(f.band, []).append(f)
    chosen = []
    for band in sorted(of_band):
        candidates = of_band[band]
        if len(candidates) == 1:
            chosen.append((band, candidates[0].rel))
            continue
        finest = min(f.resolution for f in candidates)
        chosen += [(band, f.rel) for f in sorted(candidates, key=_REL) if f.resolution == finest]
    return chosen


@dataclass(frozen=True)
class FoundImage:
    rel: str
    files: tuple[BandFile, ...]


def _scan(
    top: str, rel_dir: str, band_of_name: BandOf, with_stat: bool, problems: Problems | None
) -> tuple[list[BandFile], list[str], list[FoundImage]]:
    """The band files directly in ``rel_dir``, its sub-folders (not hidden) and its zipped
    Sentinel-2 products."""
    files, subdirs, zips = [], [], []
    prefix = f"{rel_dir}/" if rel_dir else ""
    with folder_entries(top, rel_dir, problems) as entries:
        for entry in entries:
            name = entry.name
            if name[0] == ".":
                continue
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(prefix + name)
                continue
            if is_zipped_product(name):
                zips.append(zipped_image(prefix + name, *size_and_mtime(entry, with_stat)))
                continue
            found = band_of_name(name)
            if found is not None:
                files.append(BandFile(found[0], found[1], prefix + name, *size_and_mtime(entry, with_stat)))
    return files, subdirs, zips


def _safe_files(
    top: str, safe_rel: str, band_of_name: BandOf, with_stat: bool, problems: Problems | None
) -> list[BandFile]:
    """The band files of a Sentinel-2 product: under GRANULE/*/IMG_DATA, at any depth (L2A
    keeps R10m, R20m and R60m folders there)."""
    files: list[BandFile] = []
    granules = os.path.join(top, safe_rel, "GRANULE")
    if not os.path.isdir(granules):
        return files
    with folder_entries(top, f"{safe_rel}/GRANULE", problems) as entries:
        granule_list = sorted(e.name for e in entries)
    stack = [f"{safe_rel}/GRANULE/{g}/IMG_DATA" for g in granule_list if not g.startswith(".")]
    while stack:
        rel_dir = stack.pop()
        if not os.path.isdir(os.path.join(top, rel_dir)):
            continue
        found, subdirs, _ = _scan(top, rel_dir, band_of_name, with_stat, problems)
        files += found
        stack += subdirs
    return files


def images_under(
    input_dir: str, folders: Iterable[str], band_of_name: BandOf, with_stat: bool, problems: Problems | None
) -> list[FoundImage]:
    """Every image in the ``folders`` (relative to ``input_dir``; ``[""]``: the whole input
    folder) and every folder under them: each folder holding band files directly, each
    ``*.SAFE`` product, and each zipped one (unless its ``.SAFE`` folder is next to it). When
    ``input_dir`` itself holds band files, it is one image named after the folder. Folders that
    cannot be read go to ``problems``."""
    images: list[FoundImage] = []
    stack = list(folders)
    while stack:
        images += images_in(input_dir, stack.pop(), band_of_name, with_stat, problems, stack)
    return images


def first_folders(
    input_dir: str, band_of_name: BandOf, with_stat: bool, problems: Problems | None, enough: int
) -> tuple[list[FoundImage], list[str]]:
    """The images of the folders nearest ``input_dir``, walked breadth first until ``enough``
    folders are left to walk (or none is), and those folders: :func:`images_under` of them
    finds the rest."""
    images: list[FoundImage] = []
    pending = deque([""])
    while pending and len(pending) < enough:
        below: list[str] = []
        images += images_in(input_dir, pending.popleft(), band_of_name, with_stat, problems, below)
        pending.extend(below)
    return images, list(pending)


def images_in(
    top: str, rel_dir: str, band_of_name: BandOf, with_stat: bool, problems: Problems | None, below: list[str]
) -> list[FoundImage]:
    """The images a folder makes: itself if it holds band files, its ``*.SAFE`` sub-folders and
    its zipped products; its other sub-folders are appended to ``below``."""
    images = []
    files, subdirs, zips = _scan(top, rel_dir, band_of_name, with_stat, problems)
    safes = set()
    for sub in subdirs:
        if is_safe(sub.rpartition("/")[2]):
            safe = _safe_files(top, sub, band_of_name, with_stat, problems)
            if safe:
                images.append(FoundImage(sub, tuple(safe)))
                safes.add(sub.upper())
        else:
            below.append(sub)
    for image in zips:
        if image.rel.upper() in safes:
            if problems is not None:
                problems.append((image.files[0].rel, unzipped_next_to_it(image.files[0].rel.rpartition("/")[2])))
            continue
        images.append(image)
    if files:
        name = rel_dir or os.path.basename(os.path.abspath(top))
        images.append(FoundImage(name, tuple(files)))
    return images


def image_row(image: FoundImage, needed: Iterable[str]) -> tuple[str, int, int, tuple[tuple[str, str], ...]]:
    """(path, size, mtime, files) of an image, as :class:`msrgb.sources.discovery.Source` holds
    it: a fingerprint of all its band files, and the files of the ``needed`` bands (of a
    zipped product, the zip, whose band files the job lists)."""
    size, mtime = fingerprint(image.files)
    if image.files[0].band == ZIP_BAND:
        return image.rel, size, mtime, ((ZIP_BAND, image.files[0].rel),)
    return image.rel, size, mtime, tuple(choose(image.files, needed))


SAFE_IN_OBJECT_STORAGE = (
    "is an unzipped Sentinel-2 SAFE product in object storage, which msrgb does not read (the "
    "radiometric offsets of its bands are in its metadata file); keep it zipped (.SAFE.zip), "
    "copy it to a local folder, or read the product's per-band COGs through a STAC catalogue"
)


def images_from_listing(
    objects: Iterable[tuple[str, int, int]], pattern: re.Pattern[str], top_name: str, problems: Problems | None = None
) -> list[FoundImage]:
    """:func:`images_under` of the whole input folder for a flat listing of (path relative to the input prefix, size,
    mtime), as object storage gives it: each "folder" directly holding band files is an image,
    band files directly under the prefix are one named ``top_name``; a zipped Sentinel-2
    product is an image. Paths with a hidden part are skipped; ``.SAFE`` folders go to
    ``problems`` (or fail without it)."""
    by_folder: dict[str, list[BandFile]] = {}
    zips = []
    for rel, size, mtime in objects:
        parts = rel.split("/")
        if any(not p or p[0] == "." for p in parts):
            continue
        if is_zipped_product(parts[-1]):
            zips.append(zipped_image(rel, size, mtime))
            continue
        safe = next((i for i, p in enumerate(parts[:-1]) if is_safe(p)), None)
        if safe is not None:
            where = "/".join(parts[: safe + 1])
            if problems is None:
                raise PlanError(f"{where} {SAFE_IN_OBJECT_STORAGE}")
            if (where, SAFE_IN_OBJECT_STORAGE) not in problems:
                problems.append((where, SAFE_IN_OBJECT_STORAGE))
            continue
        found = band_of(parts[-1], pattern)
        if found is not None:
            by_folder.setdefault("/".join(parts[:-1]), []).append(BandFile(found[0], found[1], rel, size, mtime))
    return [FoundImage(folder or top_name, tuple(files)) for folder, files in by_folder.items()] + zips

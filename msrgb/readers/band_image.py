"""An image made of band files, before it is read: its folder, the file of each band, a SAFE
product's metadata file, its STAC Item, or the zipped product it is read from; and the
provenance of such an image (the files it was made from, with their SHA-256).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from msrgb.radiometry.scaling import safe_metadata_file
from msrgb.readers.zipped import ZipMember
from msrgb.sources.bandfiles import ZIP_BAND, is_safe
from msrgb.sources.discovery import Source
from msrgb.sources.stac import Item, ItemRef, StacItems
from msrgb.storage.locations import Location, S3Path


@dataclass(frozen=True)
class BandImage:
    """An image to read: its folder (named in messages) and (band, path relative to the input
    folder, path) of each file to read."""

    folder: Path | S3Path | ItemRef
    files: tuple[tuple[str, str, Location | ZipMember], ...]
    #: a Sentinel-2 product's metadata file (MTD_MSIL2A.xml, MTD_MSIL1C.xml): (path relative
    #: to the input folder, path, or its bytes in a zipped product), which declares the
    #: radiometric offsets of its bands
    metadata: tuple[str, Path | bytes] | None = None
    #: the listed size of all its files, for band files in S3 (whose size costs no request)
    listed_size: int = 0
    #: the STAC Item the image is, whose rules scale its bands (msrgb.radiometry.decide.stac_rule)
    item: Item | None = None
    #: the Item's product metadata asset (path relative to the input, path), read for the
    #: processing baseline when the Item states none
    item_metadata: tuple[str, Location] | None = None
    #: a zipped product (msrgb.readers.zipped): (path relative to the input folder, path); its band
    #: files are listed when it is read
    zipped: tuple[str, Location] | None = None

    @classmethod
    def of(cls, input_dir: Path | S3Path | StacItems, src: Source) -> BandImage:
        files = src.files or ()
        if files and files[0][0] == ZIP_BAND and not isinstance(input_dir, StacItems):
            path = input_dir / files[0][1]
            return cls(path, (), zipped=(files[0][1], path), listed_size=src.size)
        if isinstance(input_dir, StacItems):
            item = input_dir.item_of(src.rel)
            paths = tuple((band, rel, input_dir / rel) for band, rel in files)
            item_metadata = None
            if item is not None and item.facts.baseline is None and item.facts.metadata_href is not None:
                rel = f"{src.rel}/{item.facts.metadata_href}"
                item_metadata = (rel, input_dir / rel)
            return cls(input_dir.item(src.rel), paths, item=item, item_metadata=item_metadata)
        inside = any(rel.startswith(src.rel + "/") for _, rel in files)
        # input_dir itself is an image named after it when it holds band files
        folder = input_dir / src.rel if inside or (input_dir / src.rel).is_dir() else input_dir
        metadata = None
        if isinstance(folder, Path) and is_safe(folder.name):  # never in S3 (msrgb.sources.bandfiles)
            found = safe_metadata_file(folder)
            if found is not None:
                metadata = (f"{src.rel}/{found.name}", found)
        listed = src.size if isinstance(input_dir, S3Path) else 0
        return cls(folder, tuple((band, rel, input_dir / rel) for band, rel in files), metadata, listed)

    def paths(self) -> list[Location]:
        if self.zipped is not None:
            return [self.zipped[1]]
        return [path for _, _, path in self.files if not isinstance(path, ZipMember)]


@dataclass
class ZipLoaded:
    """A zipped product's bytes (when kept in memory) and SHA-256, once loaded."""

    data: bytes | None = None
    sha: str | None = None


def source_digest(shas: Sequence[tuple[str, str]]) -> str:
    """The provenance of an image made of band files: ``[[path, sha256], ...]`` as JSON (paths
    relative to the input folder), in the state's source-digest column."""
    return json.dumps([list(pair) for pair in shas], separators=(",", ":"))

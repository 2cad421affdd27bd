"""Zipped Sentinel-2 products (``S2A_MSIL2A_....SAFE.zip``, as the Copernicus hubs hand them
out) read as they are, without unzipping: GDAL reads each band file inside through
``/vsizip/``, locally and, from the zip's bytes in memory, in S3.

A zip is one image, named after the ``.SAFE`` folder it holds (``X.SAFE.zip`` and ``X.zip``
give ``X.SAFE``, whose image is ``X.png``), so that its images are byte for byte those of the
unzipped product. Its band files are found by ESA's names under ``GRANULE/*/IMG_DATA``, the
finest of each band; its metadata file (``MTD_MSIL2A.xml``) gives the radiometric offsets. The
provenance of its images is the SHA-256 of the zip.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from msrgb.errors import InputError
from msrgb.radiometry.scaling import SAFE_METADATA_NAMES
from msrgb.sources.bandfiles import DEFAULT_BAND_PATTERN, BandFile, band_of, choose
from msrgb.storage.locations import Location, RemotePath

_PATTERN = re.compile(DEFAULT_BAND_PATTERN, re.IGNORECASE)


@dataclass(frozen=True)
class ZipMember:
    """A band file inside a zipped product: named ``<zip>/<member>`` in messages, read by GDAL
    as ``gdal_name``."""

    zip: Location
    member: str
    gdal_name: str

    def __str__(self) -> str:
        return f"{self.zip}/{self.member}"

    @property
    def name(self) -> str:
        return self.member.rpartition("/")[2]


@dataclass(frozen=True)
class Unzipped:
    """What a zipped product holds: its band files (band, path inside the zip, member) for the
    needed bands, the uncompressed size of each, and its metadata file's name and bytes."""

    files: tuple[tuple[str, str, ZipMember], ...]
    sizes: tuple[int, ...]
    metadata: tuple[str, bytes] | None


def _root(names: Sequence[str], where: Location) -> str:
    roots = sorted({n.split("/", 1)[0] for n in names if "/" in n and n.split("/", 1)[0].upper().endswith(".SAFE")})
    if not roots:
        raise InputError(f"{where}: the zip holds no Sentinel-2 product (no .SAFE folder at its top)")
    if len(roots) > 1:
        raise InputError(f"{where}: the zip holds {len(roots)} Sentinel-2 products ({', '.join(roots)}); keep one per zip")
    return roots[0]


def _band_files(infos: Sequence[zipfile.ZipInfo], root: str) -> list[BandFile]:
    """The band files under ``<root>/GRANULE/*/IMG_DATA`` (any depth), by ESA's names."""
    found = []
    prefix = f"{root}/GRANULE/"
    for info in infos:
        name = info.filename
        if info.is_dir() or not name.startswith(prefix) or "/IMG_DATA/" not in name[len(prefix) :]:
            continue
        band = band_of(name.rpartition("/")[2], _PATTERN)
        if band is not None:
            found.append(BandFile(band[0], band[1], name, info.file_size, 0))
    return found


@contextmanager
def open_zipped(where: Location, data: bytes | None, needed: Sequence[str]) -> Iterator[Unzipped]:
    """The band files of the ``needed`` bands in the zipped product ``where`` (its ``data`` in
    memory, or read from disk when None), for GDAL to read while the context lasts. Raises
    :class:`InputError` naming the zip for a zip that is damaged or holds no product."""
    from rasterio.io import MemoryFile

    with ExitStack() as stack:
        try:
            archive = stack.enter_context(zipfile.ZipFile(io.BytesIO(data) if data is not None else str(where)))
            infos = archive.infolist()
            root = _root([i.filename for i in infos], where)
            metadata = None
            for name in SAFE_METADATA_NAMES:
                if f"{root}/{name}" in archive.NameToInfo:
                    metadata = (name, archive.read(f"{root}/{name}"))
                    break
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
            raise InputError(f"{where}: is not a readable zip file, it may be truncated or damaged ({exc})") from exc
        if data is not None:
            base = stack.enter_context(MemoryFile(data, ext=".zip")).name
        elif isinstance(where, RemotePath):
            raise InputError(f"{where}: a zipped product in object storage must be read whole")
        else:
            base = str(Path(where).resolve())
        files = _band_files(infos, root)
        sizes = {f.rel: f.size for f in files}
        chosen = tuple(
            (band, rel, ZipMember(where, rel, f"/vsizip/{base}/{rel}")) for band, rel in choose(files, needed)
        )
        yield Unzipped(chosen, tuple(sizes[rel] for _, rel, _ in chosen), metadata)

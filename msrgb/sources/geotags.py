"""The grid of a GeoTIFF from its tags, without GDAL: size, CRS keys and pixel-to-map transform.

Checking that the band files of an image share one grid needs the georeferencing of each file.
GDAL builds a full spatial reference (a PROJ database lookup) whenever it opens a georeferenced
file, which costs more than reading a BigEarthNet band file itself; comparing the raw GeoTIFF
tags is enough to see that files share a grid. Files this cannot decide (BigTIFF, JPEG 2000,
georeferencing in other tags, different encodings of the CRS) go to GDAL's comparison
(``bench/bands.py`` measures both).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

#: struct formats of the TIFF field types with one value per item (2, ASCII, stays bytes)
_TYPES = {1: "B", 3: "H", 4: "I", 6: "b", 7: "B", 8: "h", 9: "i", 11: "f", 12: "d", 16: "Q"}
_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8}
WIDTH, HEIGHT = 256, 257
PIXEL_SCALE, TIEPOINT, TRANSFORMATION = 33550, 33922, 34264
GEO_KEYS, GEO_DOUBLES, GEO_ASCII = 34735, 34736, 34737


@dataclass(frozen=True)
class Grid:
    width: int
    height: int
    #: the GeoTIFF keys (with their double and text parameters), compared as they are
    crs_key: bytes
    #: (x origin, pixel width, y origin, pixel height) of the upper-left corner
    origin_x: float
    pixel_x: float
    origin_y: float
    pixel_y: float

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        x1 = self.origin_x + self.pixel_x * self.width
        y1 = self.origin_y + self.pixel_y * self.height
        return min(self.origin_x, x1), min(self.origin_y, y1), max(self.origin_x, x1), max(self.origin_y, y1)


def read_grid(data: bytes) -> Grid | None:
    """The grid of a classic (not Big) GeoTIFF held in ``data``, or None when the tags do not
    say it plainly (no GeoTIFF tags, a rotated transform, anything unexpected)."""
    try:
        return _read_grid(data)
    except (struct.error, IndexError, KeyError, ValueError):
        return None


def ifd_entries(data: bytes) -> tuple[str, list[tuple[int, int, int, bytes]]] | None:
    """The byte order and the (tag, type, count, 12-byte entry) of the first image directory
    of a classic TIFF held in ``data``, or None for anything else."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or struct.unpack(order + "H", data[2:4])[0] != 42:
        return None
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    head, start = struct.Struct(order + "HHI"), ifd + 2
    return order, [(*head.unpack_from(data, pos), data[pos : pos + 12]) for pos in range(start, start + 12 * count, 12)]


def entry_value(data: bytes, order: str, kind: int, n: int, entry: bytes) -> bytes | None:
    """The raw bytes of a directory entry's value (``kind``, ``n`` items): in the entry itself
    when they fit in 4 bytes, else where its offset points in ``data``; None when they run past
    the end of ``data``. Raises KeyError for an unknown field type."""
    size = _SIZES[kind] * n
    if size <= 4:
        return entry[8 : 8 + size]
    (offset,) = struct.unpack(order + "I", entry[8:12])
    value = data[offset : offset + size]
    return value if len(value) == size else None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of the first image of a classic TIFF held in ``data`` (its header is
    enough), or None where the tags do not say it plainly."""
    try:
        parsed = ifd_entries(data)
        if parsed is None:
            return None
        order, entries = parsed
        size = {
            tag: struct.unpack(order + _TYPES[kind], entry[8 : 8 + _SIZES[kind]])[0]
            for tag, kind, n, entry in entries
            if tag in (WIDTH, HEIGHT) and n == 1 and kind in (3, 4)
        }
        return (size[WIDTH], size[HEIGHT]) if len(size) == 2 else None
    except (struct.error, KeyError):
        return None


def _read_grid(data: bytes) -> Grid | None:
    parsed = ifd_entries(data)
    if parsed is None:
        return None
    order, entries = parsed
    tags: dict[int, tuple] = {}
    raw: dict[int, bytes] = {}
    wanted = (WIDTH, HEIGHT, PIXEL_SCALE, TIEPOINT, TRANSFORMATION, GEO_KEYS, GEO_DOUBLES, GEO_ASCII)
    for tag, kind, n, entry in entries:
        if tag not in wanted:
            continue
        value = entry_value(data, order, kind, n, entry)
        if value is None:
            return None
        raw[tag] = value
        if kind in _TYPES:
            tags[tag] = struct.unpack(f"{order}{n}{_TYPES[kind]}", value)
    if TRANSFORMATION in raw or PIXEL_SCALE not in tags or TIEPOINT not in tags or GEO_KEYS not in raw:
        return None
    sx, sy = tags[PIXEL_SCALE][:2]
    i, j, _, x, y, _ = tags[TIEPOINT][:6]
    crs_key = raw[GEO_KEYS] + b"|" + raw.get(GEO_DOUBLES, b"") + b"|" + raw.get(GEO_ASCII, b"")
    # the raster space (PixelIsArea or PixelIsPoint) is one of the keys, so it is compared too
    return Grid(
        int(tags[WIDTH][0]), int(tags[HEIGHT][0]), crs_key, x - i * sx, sx, y + j * sy, -sy
    )


GDAL_METADATA = 42112
SAMPLES_PER_PIXEL = 277


def samples_per_pixel(path: str) -> int | None:
    """The band count of the first image of a classic TIFF file (its SamplesPerPixel tag, as
    GDAL counts bands) from the file's first 64 KiB, or None where that does not say it plainly
    (not a classic TIFF, the directory further on, an image without width and height)."""
    with open(path, "rb") as fh:
        return samples_per_pixel_of(fh.read(65536))


def samples_per_pixel_of(head: bytes) -> int | None:
    """:func:`samples_per_pixel` of a file's first bytes (a BigTIFF's too)."""
    try:
        if head[2:4] in (b"\x2b\x00", b"\x00\x2b"):
            return _bigtiff_samples(head)
        parsed = ifd_entries(head)
    except (struct.error, IndexError):
        return None
    if parsed is None:
        return None
    order, entries = parsed
    tags = {tag: (kind, n, entry) for tag, kind, n, entry in entries}
    if WIDTH not in tags or HEIGHT not in tags:
        return None
    if SAMPLES_PER_PIXEL not in tags:
        return 1
    kind, n, entry = tags[SAMPLES_PER_PIXEL]
    if kind != 3 or n != 1:
        return None
    return int(struct.unpack(order + "H", entry[8:10])[0])


def _bigtiff_samples(head: bytes) -> int | None:
    """SamplesPerPixel of the first image of a BigTIFF (20-byte directory entries, 8-byte
    offsets), or None where its first bytes do not say it plainly."""
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or struct.unpack(order + "HH", head[4:8]) != (8, 0):
        return None
    (ifd,) = struct.unpack(order + "Q", head[8:16])
    (count,) = struct.unpack(order + "Q", head[ifd : ifd + 8])
    tags = {}
    for pos in range(ifd + 8, ifd + 8 + 20 * count, 20):
        tag, kind, n = struct.unpack(order + "HHQ", head[pos : pos + 12])
        tags[tag] = (kind, n, head[pos + 12 : pos + 20])
    if WIDTH not in tags or HEIGHT not in tags:
        return None
    if SAMPLES_PER_PIXEL not in tags:
        return 1
    kind, n, value = tags[SAMPLES_PER_PIXEL]
    return int(struct.unpack(order + "H", value[:2])[0]) if (kind, n) == (3, 1) else None


def gdal_metadata(path: str) -> bytes | None:
    """The GDAL_METADATA tag (GDAL's per-band scale and offset, among others) of the first
    image of a classic TIFF file, or None when it has none; read with a few small reads, not
    the whole file. Raises ValueError where the tags cannot say (not a classic TIFF)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        order = {b"II": "<", b"MM": ">"}.get(head[:2])
        if order is None or len(head) < 8 or struct.unpack(order + "H", head[2:4])[0] != 42:
            raise ValueError(f"{path}: not a classic TIFF file")
        (ifd,) = struct.unpack(order + "I", head[4:8])
        fh.seek(ifd)
        (count,) = struct.unpack(order + "H", fh.read(2))
        entries = fh.read(12 * count)
        for i in range(count):
            tag, kind, n = struct.unpack(order + "HHI", entries[12 * i : 12 * i + 8])
            if tag != GDAL_METADATA:
                continue
            size = _SIZES[kind] * n
            if size <= 4:
                return entries[12 * i + 8 : 12 * i + 8 + size]
            (offset,) = struct.unpack(order + "I", entries[12 * i + 8 : 12 * i + 12])
            fh.seek(offset)
            return fh.read(size)
    return None


_ITEM = re.compile(rb"<Item\s([^>]*)>([^<]*)</Item>")
_ATTR = re.compile(rb'(\w+)="([^"]*)"')


def scale_offset_items(metadata: bytes) -> dict[int, dict[str, float]]:
    """Band (0-based) -> {"scale": ..., "offset": ...} from a GDAL_METADATA tag's items."""
    found: dict[int, dict[str, float]] = {}
    for attrs, value in _ITEM.findall(metadata):
        fields = dict(_ATTR.findall(attrs))
        role = fields.get(b"role", b"").decode("ascii", "replace")
        if role in ("scale", "offset") and fields.get(b"sample", b"").isdigit():
            try:
                found.setdefault(int(fields[b"sample"]), {})[role] = float(value)
            except ValueError:
                continue  # GDAL ignores what is not a number too
    return found

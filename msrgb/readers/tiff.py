"""Reading the bands of a plain TIFF with numpy, without GDAL.

Most tiles of ML datasets (EuroSAT: 64x64, 13 bands, uncompressed strips) are the simplest kind of
TIFF. Parsing one through GDAL costs several times more than reading its bytes, and as much as
everything else done to convert it (bench/RESULTS.md). :func:`read_plain` decodes exactly
that kind: a classic TIFF (not BigTIFF) whose first image is stored in strips, uncompressed or
deflate-compressed (with or without the horizontal predictor), pixel- or band-interleaved, of an
integer or 32/64-bit float type, in either byte order. For anything else, and for anything it
does not find plainly so (a truncated strip, a tag it does not know the meaning of, GDAL's own
scale and offset metadata), it answers None and the caller asks GDAL, which then also gives the
error message. ``tests/test_tiff.py`` checks that both give the same arrays, no-data value and
band count over every kind of TIFF the suite makes, and which kinds take this path.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from msrgb.sources.geotags import (
    GDAL_METADATA,
    HEIGHT,
    SAMPLES_PER_PIXEL,
    WIDTH,
    entry_value,
    ifd_entries,
)

# Baseline TIFF tags read here (with msrgb.sources.geotags's WIDTH, HEIGHT, SAMPLES_PER_PIXEL and
# GDAL_METADATA)
BITS, COMPRESSION, PHOTOMETRIC = 258, 259, 262
STRIP_OFFSETS, ROWS_PER_STRIP, STRIP_BYTES = 273, 278, 279
PLANAR, PREDICTOR, SAMPLE_FORMAT, SUBFILE_TYPE = 284, 317, 339, 254
GDAL_NODATA = 42113

#: Tags of layouts and encodings this module does not decode; a file with any of them goes to
#: GDAL (tiles, JPEG tables, the old-style JPEG tags, YCbCr subsampling, LERC parameters)
_UNHANDLED = frozenset({322, 323, 324, 325, 347, 513, 514, 530, 50674})
FILL_ORDER = 266

#: Tags whose values are read (others are skipped without reading their values)
_WANTED = frozenset(
    {WIDTH, HEIGHT, BITS, COMPRESSION, PHOTOMETRIC, STRIP_OFFSETS, SAMPLES_PER_PIXEL, ROWS_PER_STRIP,
     STRIP_BYTES, PLANAR, PREDICTOR, SAMPLE_FORMAT, SUBFILE_TYPE, GDAL_METADATA, GDAL_NODATA,
     FILL_ORDER}
)  # fmt: skip

#: integer TIFF field types -> struct code; ASCII (2) and UNDEFINED (7) stay bytes
_INTEGERS = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 16: "Q"}
_RAW = {2, 7}

#: (SampleFormat, BitsPerSample) -> numpy type code; the types msrgb converts (reader.SUPPORTED_DTYPES)
_DTYPES = {
    (1, 8): "u1",
    (1, 16): "u2",
    (2, 16): "i2",
    (1, 32): "u4",
    (2, 32): "i4",
    (3, 32): "f4",
    (3, 64): "f8",
}

_DEFLATE = (8, 32946)


@dataclass
class PlainTiff:
    """What :func:`read_plain` read: the requested bands (0-based index -> rows x cols array in
    the machine's byte order), and what GDAL would report about the file."""

    bands: dict[int, np.ndarray]
    count: int
    dtype: str
    nodata: float | None


def read_plain(data: bytes, needed: Sequence[int], max_bytes: int) -> PlainTiff | None:
    """The bands ``needed`` (0-based) of the TIFF held in ``data``, or None when the file is
    not of the plain kind this module decodes (GDAL reads it then), when a needed band does
    not exist, or when the needed bands would take more than ``max_bytes`` decoded."""
    try:
        return _read(data, needed, max_bytes)
    except (struct.error, IndexError, KeyError, ValueError, OverflowError, zlib.error):
        return None


class _Header(NamedTuple):
    order: str
    tags: dict[int, tuple[int, ...] | bytes]
    #: (bands needed, byte limit) -> the layout read from the tags (:func:`_layout`)
    layouts: dict[tuple[tuple[int, ...], int], _Layout | None]


@dataclass(frozen=True)
class _Layout:
    """How the bands are stored, from the tags alone."""

    rows: int
    cols: int
    samples: int
    dtype: np.dtype
    native: np.dtype
    compression: int
    predictor: int
    planar: int
    nodata: float | None
    wanted: tuple[int, ...]


#: a dataset's files usually share their header: the tags of recent files, by the bytes they
#: were read from (see :func:`_tags`), and those bytes' lengths, newest first
_RECENT_TAGS: dict[bytes, _Header] = {}
_RECENT_ENDS: tuple[int, ...] = ()
#: headers longer than this are not remembered (a directory written after the image data)
_RECENT_HEADER_BYTES = 4096
_RECENT_COUNT = 64


def _tags(data: bytes) -> _Header | None:
    """The byte order and the wanted tags of the first image of a classic TIFF (its directory
    read by :func:`msrgb.sources.geotags.ifd_entries`); None when the image has a tag this module does not
    handle, or a wanted tag of a type it does not expect.

    The tags depend only on the bytes the directory and the wanted values take at the start of
    the file (whose length those bytes say themselves): a file that starts with the same bytes
    as one read before has its tags, remembered with the layouts read from them (read-only:
    shared between files)."""
    global _RECENT_ENDS
    for end in _RECENT_ENDS:
        known = _RECENT_TAGS.get(bytes(data[:end]))  # bytes: a memoryview's slice is no key
        if known is not None:
            return known
    parsed = _read_tags(data)
    if parsed is None:
        return None
    order, tags, end = parsed
    header = _Header(order, tags, {})
    if end <= _RECENT_HEADER_BYTES:
        if len(_RECENT_TAGS) >= _RECENT_COUNT:
            _RECENT_TAGS.clear()
        _RECENT_TAGS[bytes(data[:end])] = header
        if end not in _RECENT_ENDS:
            _RECENT_ENDS = (end, *_RECENT_ENDS[:3])
    return header


def _read_tags(data: bytes) -> tuple[str, dict[int, tuple[int, ...] | bytes], int] | None:
    """:func:`_tags` read from ``data``, with where the bytes it read end."""
    parsed = ifd_entries(data)
    if parsed is None:
        return None
    order, found = parsed
    (ifd,) = struct.unpack(order + "I", data[4:8])
    end = ifd + 2 + 12 * len(found)
    tags: dict[int, tuple[int, ...] | bytes] = {}
    for tag, kind, n, entry in found:
        if tag in _UNHANDLED:
            return None
        if tag not in _WANTED:
            continue
        if kind not in _RAW and kind not in _INTEGERS:
            return None  # a rational or a float where an integer is expected
        value = entry_value(data, order, kind, n, entry)
        if value is None:
            return None
        if len(value) > 4:  # stored where the entry points
            end = max(end, struct.unpack(order + "I", entry[8:12])[0] + len(value))
        tags[tag] = value if kind in _RAW else struct.unpack(f"{order}{n}{_INTEGERS[kind]}", value)
    return order, tags, end


def _one(tags: dict[int, tuple[int, ...] | bytes], tag: int, default: int | None = None) -> int:
    value = tags.get(tag)
    if value is None:
        if default is None:
            raise KeyError(tag)
        return default
    if isinstance(value, bytes) or len(value) != 1:
        raise ValueError(tag)
    return value[0]


def _same(tags: dict[int, tuple[int, ...] | bytes], tag: int, samples: int, default: int) -> int:
    """A per-sample tag that must have one value for all samples."""
    value = tags.get(tag, (default,))
    if isinstance(value, bytes) or len(set(value)) != 1 or len(value) not in (1, samples):
        raise ValueError(tag)
    return value[0]


def _read(data: bytes, needed: Sequence[int], max_bytes: int) -> PlainTiff | None:
    header = _tags(data)
    if header is None:
        return None
    key = (tuple(needed), max_bytes)
    if key in header.layouts:
        layout = header.layouts[key]
    else:
        layout = header.layouts[key] = _layout(header.order, header.tags, needed, max_bytes)
    if layout is None:
        return None
    rows, cols, samples, dtype, native = layout.rows, layout.cols, layout.samples, layout.dtype, layout.native
    per_plane = samples if layout.planar == 1 else 1
    planes = _planes(
        data, header.tags, rows, cols * per_plane * dtype.itemsize, layout.compression,
        samples if layout.planar == 2 else 1, layout.wanted,
    )  # fmt: skip
    if planes is None:
        return None
    if layout.planar == 1:
        raw = planes[0]
        pixels = np.frombuffer(raw, dtype).reshape(rows, cols, samples)
        if layout.predictor == 2:
            pixels = np.cumsum(pixels, axis=1, dtype=native)
        bands = {i: np.array(pixels[:, :, i], native) for i in needed}
    else:
        bands = {}
        for i in needed:
            plane = np.frombuffer(planes[i], dtype).reshape(rows, cols)
            if layout.predictor == 2:
                plane = np.cumsum(plane, axis=1, dtype=native)
            bands[i] = np.array(plane, native)
    return PlainTiff(bands, samples, dtype.name, layout.nodata)


def _layout(
    order: str, tags: dict[int, tuple[int, ...] | bytes], needed: Sequence[int], max_bytes: int
) -> _Layout | None:
    """How the ``needed`` bands are stored, or None when the file is not of the plain kind or
    they would take more than ``max_bytes`` decoded."""
    cols, rows = _one(tags, WIDTH), _one(tags, HEIGHT)
    samples = _one(tags, SAMPLES_PER_PIXEL, 1)
    code = _DTYPES.get((_same(tags, SAMPLE_FORMAT, samples, 1), _same(tags, BITS, samples, 1)))
    compression, predictor = _one(tags, COMPRESSION, 1), _one(tags, PREDICTOR, 1)
    planar = _one(tags, PLANAR, 1) if samples > 1 else 1
    if (
        code is None
        or rows < 1
        or cols < 1
        or _one(tags, SUBFILE_TYPE, 0) != 0
        or _one(tags, FILL_ORDER, 1) != 1
        or _one(tags, PHOTOMETRIC) not in (1, 2)  # grey or RGB: values as stored
        or (compression != 1 and compression not in _DEFLATE)
        or predictor not in (1, 2)
        or (predictor == 2 and (compression == 1 or code[0] == "f"))
        or planar not in (1, 2)
        or not needed
        or max(needed) >= samples
        or min(needed) < 0
        or _declares_scaling(tags.get(GDAL_METADATA))
    ):
        return None
    dtype = np.dtype(order + code)
    if rows * cols * len(needed) * dtype.itemsize > max_bytes:
        return None
    nodata = _nodata(tags.get(GDAL_NODATA))
    if nodata is False:
        return None
    per_plane = samples if planar == 1 else 1
    wanted = (0,) if planar == 1 else tuple(sorted(set(needed)))
    if rows * cols * per_plane * dtype.itemsize * len(wanted) > max_bytes:
        return None  # all bands of a pixel-interleaved image are decoded: bounded as well
    return _Layout(rows, cols, samples, dtype, dtype.newbyteorder("="), compression, predictor, planar, nodata, wanted)


def _planes(
    data: bytes,
    tags: dict[int, tuple[int, ...] | bytes],
    rows: int,
    row_bytes: int,
    compression: int,
    n_planes: int,
    wanted: Sequence[int],
) -> dict[int, bytes | memoryview] | None:
    """The decoded bytes of the ``wanted`` planes of ``n_planes`` (one for pixel-interleaved
    images), or None where a strip is missing, short or outside the file."""
    per_strip = min(_one(tags, ROWS_PER_STRIP, 2**32 - 1), rows)
    if per_strip < 1:
        return None
    n_strips = -(-rows // per_strip)
    offsets, counts = tags[STRIP_OFFSETS], tags[STRIP_BYTES]
    if isinstance(offsets, bytes) or isinstance(counts, bytes):
        return None
    if len(offsets) != n_strips * n_planes or len(counts) != len(offsets):
        return None
    planes: dict[int, bytes | memoryview] = {}
    view = memoryview(data)
    for p in wanted:
        first = p * n_strips
        wants = [min(per_strip, rows - s * per_strip) * row_bytes for s in range(n_strips)]
        if compression == 1 and _contiguous(offsets, counts, first, wants, len(data)):
            planes[p] = view[offsets[first] : offsets[first] + rows * row_bytes]
            continue
        pieces: list[bytes | memoryview] = []
        for s, want in enumerate(wants):
            at, size = offsets[first + s], counts[first + s]
            if at + size > len(data):
                return None
            if compression == 1:
                if size < want:
                    return None
                pieces.append(view[at : at + want])
            else:
                raw = zlib.decompressobj().decompress(view[at : at + size], want)
                if len(raw) != want:
                    return None
                pieces.append(raw)
        planes[p] = b"".join(pieces)
    return planes


def _contiguous(
    offsets: tuple[int, ...], counts: tuple[int, ...], first: int, wants: list[int], size: int
) -> bool:
    """True when the uncompressed strips from ``first`` on follow each other in the file, each
    complete (the usual layout: the plane is then one slice of the file)."""
    at = offsets[first]
    for s, want in enumerate(wants):
        if offsets[first + s] != at or counts[first + s] < want:
            return False
        at += want
    return at <= size


def _declares_scaling(metadata: tuple[int, ...] | bytes | None) -> bool:
    """True when GDAL's metadata tag declares a per-band scale or offset (GDAL applies those to
    the values it reports as scales and offsets, which this module leaves to GDAL)."""
    if metadata is None:
        return False
    if not isinstance(metadata, bytes):
        return True
    return b'role="scale"' in metadata or b'role="offset"' in metadata or b"role='" in metadata


def _nodata(value: tuple[int, ...] | bytes | None) -> float | None | bool:
    """GDAL's no-data value from its tag (text), None without one, False when the text is not
    plainly a number."""
    if value is None:
        return None
    if not isinstance(value, bytes):
        return False
    text = value.rstrip(b"\0").strip()
    try:
        return float(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return False

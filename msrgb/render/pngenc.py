"""PNG encoding with numpy and zlib: msrgb's own encoder (bench/steps.py measures it against
imageio and Pillow)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from zlib_ng import zlib_ng

#: zlib's Huffman-only strategy; zlib-ng writes the same bytes for it, in about 60 % of the time
#: (bench/encoders.py)
HUFFMAN_ONLY = 2


#: PNG encodings: name -> (zlib level, zlib strategy). Huffman-only skips the LZ77 match search:
#: on real Sentinel-2 tiles it is as small as level 6 (within 0.1 %) and 2-3x faster to encode.
PNG_COMPRESSION: dict[str, tuple[int, int]] = {
    "huffman": (6, HUFFMAN_ONLY),
    "fast": (1, 0),
    "default": (6, 0),
    "best": (9, 0),
}


def compressor(level: int, strategy: int) -> Any:
    """A deflate stream of ``level`` and ``strategy``: zlib-ng's for Huffman-only, zlib's for
    the others (zlib-ng's LZ77 levels write other bytes, and larger ones at level 1)."""
    module: Any = zlib_ng if strategy == HUFFMAN_ONLY else zlib
    return module.compressobj(level, zlib.DEFLATED, 15, 8, strategy)


#: PNG filter types in the order they are tried; the first with the lowest score wins.
_FILTER_ORDER = np.array([0, 2, 1, 4], dtype=np.uint8)  # None, Up, Sub, Paeth


def encode_png(image: np.ndarray, level: int, strategy: int, text: Mapping[str, str] | None = None) -> bytes:
    """PNG bytes of an (rows, cols, 3 or 4) uint8 or uint16 image, written with numpy and zlib.

    8-bit images get Pillow's filter choice (per row, the first of None, Up, Sub and Paeth with
    the smallest sum of absolute filtered bytes), so for small tiles and the default
    Huffman-only compression the bytes are the same as Pillow's; it is faster than going through
    imageio and Pillow because zlib is asked for less memory (Pillow's memLevel 9 spends most of
    the time clearing it; bench/steps.py). 16-bit images (which Pillow cannot write in colour)
    use filter None on every row.
    """
    rows, cols, channels = image.shape
    stream = PngStream(rows, cols, channels, image.dtype, level, strategy)
    stream.add(image)
    return b"".join(stream.finish(text))


class PngStream:
    """Encodes an image handed over in blocks of rows (top to bottom), for images too large to
    hold whole. Only the compressed data is kept; :meth:`finish` returns the file's pieces. The
    bytes are those of :func:`encode_png` on the whole image, whatever the blocks: rows are
    filtered with the row above carried over, and zlib's output does not depend on how its input
    is split."""

    def __init__(self, rows: int, cols: int, channels: int, dtype: npt.DTypeLike, level: int, strategy: int):
        self.rows, self.cols, self.channels = rows, cols, channels
        self.depth = 16 if np.dtype(dtype) == np.uint16 else 8
        self._packer = compressor(level, strategy)
        self._idat: list[bytes] = []
        self._above = np.zeros(cols * channels, dtype=np.uint8)  # the row above the first is zero
        self._added = 0

    def add(self, block: np.ndarray) -> None:
        """The next rows of the image, as an (n, cols, channels) array of its dtype."""
        n = block.shape[0]
        if self.depth == 16:
            raw = np.zeros((n, 1 + self.cols * self.channels * 2), dtype=np.uint8)
            raw[:, 1:] = block.astype(">u2").view(np.uint8).reshape(n, -1)
            self._idat.append(self._packer.compress(raw.tobytes()))
        else:
            lines = block.reshape(n, self.cols * self.channels)
            step = max(1, _BLOCK_BYTES // lines.shape[1])
            for start in range(0, n, step):
                part = lines[start : start + step]
                filtered = _filter_rows(part, self._above, self.channels)
                self._idat.append(self._packer.compress(filtered.tobytes()))
                self._above = part[-1]
        self._added += n

    def finish(self, text: Mapping[str, str] | None = None) -> list[bytes]:
        """The PNG file, in pieces to write one after the other; ``text`` (keyword -> text)
        goes into iTXt chunks (UTF-8) before the image data, where Pillow's ``Image.text``
        and ``exiftool`` find it."""
        if self._added != self.rows:
            raise ValueError(f"PNG of {self.rows} rows was given {self._added}")
        self._idat.append(self._packer.flush())
        length = sum(len(part) for part in self._idat)
        crc = zlib.crc32(b"IDAT")
        for part in self._idat:
            crc = zlib.crc32(part, crc)
        pieces = _start(self.rows, self.cols, self.channels, self.depth)
        for keyword, value in (text or {}).items():
            body = keyword.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")
            pieces.append(_chunk(b"iTXt", body))
        pieces.append(struct.pack(">I", length) + b"IDAT")
        pieces += self._idat
        pieces += [struct.pack(">I", crc & 0xFFFFFFFF), _chunk(b"IEND", b"")]
        self._idat = []
        return pieces


#: Rows of an 8-bit image are filtered this many bytes at a time.
_BLOCK_BYTES = 1 << 20


def _filter_rows(x: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """The filtered scanlines (filter byte first) of the uint8 rows ``x`` with ``bpp`` bytes
    per pixel (``above``: the row before ``x[0]``), each row with the filter whose output is
    closest to zero.

    Written for few numpy calls on small images (a 64 x 64 tile is 12 KB): the rows sit in one
    flat buffer after the row above, each with ``bpp`` zero bytes on its left, so that the left
    (a), upper (b) and upper-left (c) neighbours of every byte are the same buffer shifted and
    every step is one contiguous pass (what it computes for the padding is ignored); Paeth's
    choice is made with bit masks rather than ``np.where``, which branches on every byte."""
    rows, n = x.shape
    w = n + bpp
    size = rows * w
    buf = np.zeros(bpp + w + size, dtype=np.uint8)
    grid = buf[bpp:].reshape(rows + 1, w)
    grid[0, bpp:] = above
    grid[1:, bpp:] = x
    xs, a8, b8, c8 = buf[bpp + w :], buf[w : w + size], buf[bpp : bpp + size], buf[:size]
    cand = np.empty((4, rows, w), dtype=np.uint8)
    flat = cand.reshape(4, size)
    flat[0] = xs  # None
    np.subtract(xs, b8, out=flat[1])  # Up
    np.subtract(xs, a8, out=flat[2])  # Sub
    # Paeth: a where pa <= pb and pa <= pc, else b where pb <= pc, else c (libpng's order),
    # with pa = |b - c|, pb = |a - c|, pc = |a + b - 2c|
    wide = buf.astype(np.int16)
    a, b, c = wide[w : w + size], wide[bpp : bpp + size], wide[:size]
    pa = b - c
    pb = a - c
    pc = pa + pb
    np.abs(pc, out=pc)
    np.abs(pa, out=pa)
    np.abs(pb, out=pb)
    use_b = np.negative(np.less(pb, pa).view(np.int8)).view(np.uint8)  # 0xFF where b wins
    np.minimum(pa, pb, out=pa)
    use_c = np.negative(np.less(pc, pa).view(np.int8)).view(np.uint8)
    pred = np.bitwise_xor(a8, b8)
    pred &= use_b
    pred ^= a8
    other = np.bitwise_xor(pred, c8)
    other &= use_c
    pred ^= other
    np.subtract(xs, pred, out=flat[3])
    cand[:, :, :bpp] = 0  # the padding, out of the scores
    lines = cand.reshape(4 * rows, w)
    # distance from zero of a byte v read as signed, min(v, 256 - v): |v| as int8, read
    # unsigned (|-128| stays -128, read as 128); summed per row in 16 bits while that cannot
    # overflow (numpy's integer sums, not BLAS, whose threads would compete with the jobs')
    dist = np.abs(lines.view(np.int8)).view(np.uint8)
    if w * 128 < 1 << 16:
        score = dist.astype(np.uint16).sum(axis=1, dtype=np.uint16)
    else:
        score = dist.sum(axis=1, dtype=np.uint32)
    best = score.reshape(4, rows).argmin(axis=0)
    chosen = np.take(lines, best * rows + np.arange(rows), axis=0)
    chosen[:, bpp - 1] = _FILTER_ORDER[best]
    return chosen[:, bpp - 1 :]


def encode_png_quick(image: np.ndarray) -> bytes:
    """PNG bytes of an (rows, cols, 3 or 4) uint8 image, fast rather than small: filter Up on
    every row and zlib-ng's level 2. For pictures made of many small images on a plain
    background (contact sheets), about 4x faster than Pillow's level 1 with run-length matching,
    about 5 % larger (bench/encoders.py --sheets); the bytes are not Pillow's."""
    rows, cols, channels = image.shape
    lines = np.ascontiguousarray(image, dtype=np.uint8).reshape(rows, cols * channels)
    raw = np.empty((rows, 1 + cols * channels), dtype=np.uint8)
    raw[:, 0] = 2  # Up; the row above the first is zero
    raw[0, 1:] = lines[0]
    np.subtract(lines[1:], lines[:-1], out=raw[1:, 1:])
    packer = zlib_ng.compressobj(2, zlib.DEFLATED, 15, 8, 0)
    data = packer.compress(raw) + packer.flush()
    return b"".join([*_start(rows, cols, channels, 8), _chunk(b"IDAT", data), _chunk(b"IEND", b"")])


def decode_png_quick(data: bytes, max_pixels: int) -> np.ndarray | None:
    """The (rows, cols, 3 or 4) pixels of PNG bytes laid out as :func:`encode_png_quick` writes
    them (8 bits, not interlaced, filter Up on every row), or None for any other bytes (read
    them with Pillow, which also says what is wrong with damaged ones) or an image of more than
    ``max_pixels``. About 3x faster than Pillow on a
    contact sheet (zlib-ng's inflate, then each row added to the one above): a sheet rebuilt
    after new files reads its previous version. The chunks' checksums are not checked (the sheet's
    caller checks a digest of the whole file)."""
    chunks = _chunks(data)
    if chunks is None or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":  # (ends at IEND: not empty)
        return None
    if len(chunks[0][1]) != 13 or any(kind not in (b"IDAT", b"IEND") for kind, _ in chunks[1:]):
        return None  # other chunks (a palette, text, gamma...): not one of ours
    cols, rows, depth, color_type, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    channels = {2: 3, 6: 4}.get(color_type)
    if channels is None or (depth, compression, filtering, interlace) != (8, 0, 0, 0) or rows * cols > max_pixels:
        return None
    try:
        raw = zlib_ng.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    except zlib_ng.error:  # type: ignore[misc]  # (its stub declares an instance) damaged: Pillow says why
        return None
    if len(raw) != rows * (1 + cols * channels) or rows == 0:
        return None
    lines = np.frombuffer(raw, dtype=np.uint8).reshape(rows, 1 + cols * channels)
    if np.any(lines[:, 0] != 2):
        return None  # rows filtered otherwise
    pixels = np.empty((rows, cols * channels), dtype=np.uint8)
    pixels[0] = lines[0, 1:]
    for row in range(1, rows):  # a row at a time: 5x faster than numpy's cumulative sum down columns
        np.add(pixels[row - 1], lines[row, 1:], out=pixels[row])
    return pixels.reshape(rows, cols, channels)


def _chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """The (type, body) chunks of PNG bytes up to IEND, or None if they are not laid out as a
    PNG's (signature, lengths that fit)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    chunks, at = [], 8
    while at + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        if at + 12 + length > len(data):
            return None
        chunks.append((kind, data[at + 8 : at + 8 + length]))
        at += 12 + length
        if kind == b"IEND":
            return chunks
    return None


def _start(rows: int, cols: int, channels: int, depth: int) -> list[bytes]:
    """The PNG signature and header chunk of an RGB (3 channels) or RGBA (4) image."""
    color_type = {3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", cols, rows, depth, color_type, 0, 0, 0)
    return [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", header)]


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

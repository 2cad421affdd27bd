"""Read a multispectral GeoTIFF, stretch three bands to RGB, write a PNG atomically."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

import numpy as np
import rasterio
from affine import Affine
from rasterio.io import DatasetReader, MemoryFile

from msrgb.products import Product, stretch

# Tiles are opened without georeferencing on purpose (see Converter.read).
warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)

# Input files up to this size are read once and parsed by GDAL in memory (see convert()).
IN_MEMORY_BYTES = 64 * 2**20

#: GDAL settings for the hot path. Not listing the folder on every open saves about 0.4 ms per
#: file in EuroSAT's 3,000-file folders; not building the CRS from GeoTIFF keys saves another
#: 0.4-0.6 ms when no output needs georeferencing. Reading uncompressed TIFFs through a memory
#: map instead of GDAL's block cache makes the read 30 % faster (0.35 instead of 0.5 ms per
#: EuroSAT tile; since 0.3.1 this applies to files over IN_MEMORY_BYTES, the others are parsed
#: from memory); GDAL checks the strips against the file size first, so a truncated file is
#: still a clean error. Compressed TIFFs are read as before.
GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_PAM_ENABLED": "NO",
    "GTIFF_VIRTUAL_MEM_IO": "YES",
}

#: PNG encodings: name -> (zlib level, zlib strategy). Huffman-only skips the LZ77 match search:
#: on real Sentinel-2 tiles it is as small as level 6 (within 0.1 %) and 2-3x faster to encode.
PNG_COMPRESSION: dict[str, tuple[int, int]] = {
    "huffman": (6, 2),
    "fast": (1, 0),
    "default": (6, 0),
    "best": (9, 0),
}


def library_versions() -> str:
    """The versions that determine the PNG bytes, as one line (the PNG encoder is msrgb's own,
    on numpy and zlib)."""
    from msrgb import __version__

    parts = {
        "msrgb": __version__,
        "rasterio": rasterio.__version__,
        "GDAL": rasterio.__gdal_version__,
        "numpy": np.__version__,
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
    }
    return " ".join(f"{k}={v}" for k, v in parts.items())


def environment_id(versions: str) -> str:
    return hashlib.sha256(versions.encode()).hexdigest()[:12]


_HOST = socket.gethostname().replace(".", "-")


def is_stale_temporary(name: str) -> bool:
    """True for a temporary PNG name (see :func:`write_atomic`) left by a dead process of this
    host; a process of another host or a live one is never judged stale."""
    parts = name.rsplit(".", 4)  # .<png name>.<host>.<pid>.<thread>.tmp
    if len(parts) != 5 or parts[4] != "tmp" or parts[1] != _HOST or not parts[2].isdigit():
        return False
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False


class InputError(Exception):
    """A TIFF that cannot be converted; the message names the file and the reason."""


class OutputError(Exception):
    """A PNG that cannot be written (disk full, no permission); names the file and the reason."""


#: Data types a tile may have: the stretches expect integer reflectances (EuroSAT: uint16).
SUPPORTED_DTYPES = ("uint8", "uint16", "int16")


def _describe_unreadable(path: Path) -> str | None:
    """A plain reason for a file that cannot even be opened, or None to let GDAL explain."""
    if path.is_symlink() and not path.exists():
        return f"is a symbolic link to {os.readlink(path)!r}, which does not exist"
    try:
        st = path.stat()
    except FileNotFoundError:
        return "no longer exists"
    except OSError as exc:
        return f"cannot be accessed ({exc.strerror})"
    if st.st_size == 0:
        return "is empty (0 bytes)"
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except PermissionError:
        return "cannot be read: permission denied"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if head[:2] not in (b"II", b"MM"):
        return "is not a TIFF file (it does not start with a TIFF header)"
    return None


def _root_message(exc: BaseException) -> str:
    """The message of the innermost cause: rasterio wraps GDAL's precise error ("IReadBlock
    failed ... TIFFReadEncodedStrip() failed") in "Read failed. See previous exception"."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc)


@dataclass
class Tile:
    """What was read from one input: the needed bands, plus what some products need."""

    bands: dict[int, np.ndarray]
    nodata: float | None = None
    transform: Affine | None = None
    crs_wkt: str | None = None


class Converter:
    """Converts tiles to PNGs for a fixed list of products, reading each tile once. Thread-safe.
    Products with a dataset-wide stretch must come with their limits (Product.with_limits)."""

    def __init__(self, products: Sequence[Product], in_memory_bytes: int = IN_MEMORY_BYTES):
        for p in products:
            if p.png_compression not in PNG_COMPRESSION:
                raise ValueError(
                    f"product {p.name!r}: png_compression {p.png_compression!r}: choose one "
                    f"of {sorted(PNG_COMPRESSION)}"
                )
        self.products = list(products)
        self.in_memory_bytes = in_memory_bytes  # larger inputs are hashed in chunks, read from disk
        # one lookup table per product and channel, for the stretches with fixed limits
        self._luts: dict[str, list[np.ndarray]] = {}
        for p in self.products:
            limits = p.fixed_limits()
            if limits is not None:
                tables: dict[tuple[float, float], np.ndarray] = {}
                self._luts[p.name] = [
                    tables.setdefault(lim, p.lut(c)) for c, lim in enumerate(limits)
                ]
        self._needed = sorted({i for p in self.products for i in p.indices})
        self._georef = any(p.needs_georef for p in self.products)

    def read(self, path: str | Path, data: bytes | None = None) -> Tile:
        """Read the bands the products need, once for all products; from ``data`` (the file's
        bytes, already read) when given, which spares GDAL a second open of the file. Raises
        :class:`InputError` naming the file and the problem."""
        try:
            if data is not None:
                try:
                    with MemoryFile(data) as memfile:
                        return self._read(memfile.name, path)
                except InputError:
                    raise
                except Exception:
                    pass  # GDAL fails on the file itself below, with its message about the file
            return self._read(path, path)
        except InputError:
            raise
        except rasterio.errors.RasterioIOError as exc:
            reason = _describe_unreadable(Path(path))
            if reason is not None:
                raise InputError(f"{path}: {reason}") from exc
            raise InputError(
                f"{path}: cannot be read as a GeoTIFF, it may be truncated or damaged "
                f"(GDAL: {_root_message(exc)})"
            ) from exc
        except Exception as exc:  # a truncated strip surfaces as a generic rasterio error
            raise InputError(
                f"{path}: reading failed, the file may be truncated or damaged "
                f"({type(exc).__name__}: {_root_message(exc)})"
            ) from exc

    def _read(self, name: str | Path, path: str | Path) -> Tile:
        """Open ``name`` (the file ``path`` or a copy of it in memory) and read the bands. Checks
        that name ``path`` raise InputError; GDAL's own errors are left to :meth:`read`."""
        # Georeferencing is read only when a product writes it: building the CRS is the most
        # expensive part of opening a small GeoTIFF. DatasetReader directly: rasterio.open
        # would set up a GDAL environment per call.
        options = {} if self._georef else {"GEOREF_SOURCES": "NONE"}
        with DatasetReader(name, driver="GTiff", sharing=False, **options) as src:
            count, dtype = src.count, src.dtypes[0]
            for p in self.products:
                if count != len(p.band_map):
                    raise InputError(
                        f"{path}: has {count} band(s), but product {p.name!r} expects "
                        f"{len(p.band_map)} ({' '.join(p.band_map)})"
                    )
            if dtype not in SUPPORTED_DTYPES:
                raise InputError(
                    f"{path}: data type {dtype} is not supported "
                    f"(expected one of {', '.join(SUPPORTED_DTYPES)})"
                )
            bands = src.read([i + 1 for i in self._needed])
            tile = Tile(dict(zip(self._needed, bands)), src.nodata)
            if self._georef:
                if src.crs is None or src.transform.is_identity:
                    raise InputError(
                        f"{path}: has no georeferencing (CRS and transform), but a product "
                        "asks for a world file"
                    )
                tile.transform, tile.crs_wkt = src.transform, src.crs.to_wkt()
        return tile

    def render(self, tile: Tile | dict[int, np.ndarray], product: Product) -> np.ndarray:
        """The (rows, cols, 3) image of ``product`` (uint8 or uint16), or (rows, cols, 4) with
        an alpha channel when the product has a nodata value."""
        if isinstance(tile, dict):
            tile = Tile(tile)
        stack, invalid = product_bands(tile, product)
        luts = self._luts.get(product.name)
        if luts is not None and stack.dtype in (np.uint8, np.uint16):
            if luts[0] is luts[1] is luts[2]:
                rgb = luts[0][stack]
            else:
                rgb = np.stack([luts[c][stack[..., c]] for c in range(3)], axis=-1)
        else:
            limits = product.fixed_limits() or image_percentiles(stack, invalid, product)
            rgb = np.stack(
                [stretch(stack[..., c], lo, hi, product) for c, (lo, hi) in enumerate(limits)],
                axis=-1,
            )
        if product.nodata is None:
            return rgb
        alpha = np.full(rgb.shape[:2], product.top, dtype=rgb.dtype)
        if invalid is not None:
            alpha[invalid] = 0
        return np.concatenate([rgb, alpha[..., None]], axis=-1)

    def encode(self, rgb: np.ndarray, png_compression: str = "huffman") -> bytes:
        """PNG bytes of an (rows, cols, 3 or 4) uint8 or uint16 image."""
        level, strategy = PNG_COMPRESSION[png_compression]
        return encode_png(rgb, level, strategy)

    def convert(self, src: str | Path, dests: dict[str, Path]) -> tuple[str, dict[str, str]]:
        """Convert ``src`` to one PNG per product (``dests``: product name -> PNG path), with
        the products' side files (world file, .aux.xml). Returns the SHA-256 of the source and
        of each PNG written (product name -> hash), for the provenance manifest."""
        # One open and, for files up to IN_MEMORY_BYTES, one read: the bytes are hashed and
        # GDAL parses them in memory (0.2 ms per EuroSAT tile less than opening the file again;
        # on a network file system every open is a round trip). Larger files (a whole scene)
        # are hashed in chunks and read by GDAL from the file.
        try:
            # O_NONBLOCK: a FIFO named like a TIFF must not hang the job (no effect on files)
            with open(os.open(src, os.O_RDONLY | os.O_NONBLOCK), "rb") as fh:
                st = os.fstat(fh.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise InputError(f"{src}: is not a regular file")
                if st.st_size <= self.in_memory_bytes:
                    data: bytes | None = fh.read()
                    source_sha = hashlib.sha256(data).hexdigest()
                else:
                    data = None
                    source_sha = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError as exc:
            self.read(src)  # raises InputError naming the problem (permissions, broken link)
            raise InputError(f"{src}: cannot be read ({exc.strerror})") from exc
        tile = self.read(src, data)
        del data
        png_sha = {}
        for product in self.products:
            png = dests.get(product.name)
            if png is None:
                continue
            data = self.encode(self.render(tile, product), product.png_compression)
            png_sha[product.name] = hashlib.sha256(data).hexdigest()
            files = {png: data}
            if product.world_file:
                assert tile.transform is not None and tile.crs_wkt is not None
                files[world_file_path(png)] = world_file_text(tile.transform).encode()
                files[aux_xml_path(png)] = aux_xml_text(tile.transform, tile.crs_wkt).encode()
            for path, data in files.items():
                try:
                    write_atomic(path, data)
                except OSError as exc:
                    raise OutputError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
        return source_sha, png_sha


def product_bands(tile: Tile, product: Product) -> tuple[np.ndarray, np.ndarray | None]:
    """The (rows, cols, 3) stack of the product's bands, and the mask of its nodata pixels
    (any of the three bands equal to the nodata value), or None without a nodata value."""
    stack = np.stack([tile.bands[i] for i in product.indices], axis=-1)
    nodata = tile.nodata if product.nodata == "file" else product.nodata
    invalid = (stack == nodata).any(axis=-1) if nodata is not None else None
    return stack, invalid


def image_percentiles(
    stack: np.ndarray, invalid: np.ndarray | None, product: Product
) -> list[tuple[float, float]]:
    """Per-band (low, high) percentiles of one image, without its nodata pixels."""
    limits = []
    for c in range(3):
        values = stack[..., c] if invalid is None else stack[..., c][~invalid]
        if values.size == 0:
            limits.append((0.0, 1.0))
            continue
        lo, hi = np.percentile(values, [product.low, product.high])
        limits.append((float(lo), float(hi) if hi > lo else float(lo) + 1.0))
    return limits


#: PNG filter types in the order they are tried; the first with the lowest score wins.
_FILTER_ORDER = np.array([0, 2, 1, 4], dtype=np.uint8)  # None, Up, Sub, Paeth


def encode_png(image: np.ndarray, level: int, strategy: int) -> bytes:
    """PNG bytes of an (rows, cols, 3 or 4) uint8 or uint16 image, written with numpy and zlib.

    8-bit images get Pillow's filter choice (per row, the first of None, Up, Sub and Paeth with
    the smallest sum of absolute filtered bytes), so for tiles of up to 16 KB of image data and
    the default Huffman-only compression the bytes are the same as Pillow's. The same work through
    imageio and Pillow costs 0.55-0.75 ms per EuroSAT tile, this 0.29 ms: Pillow asks zlib for
    more memory (memLevel 9), which it spends most of the time clearing. Large images are
    filtered in blocks of rows, so memory stays a few times the block's size. 16-bit images
    (which Pillow cannot write in colour) use filter None on every row."""
    rows, cols, channels = image.shape
    packer = zlib.compressobj(level, zlib.DEFLATED, 15, 8, strategy)
    if image.dtype == np.uint16:
        raw = np.zeros((rows, 1 + cols * channels * 2), dtype=np.uint8)
        raw[:, 1:] = image.astype(">u2").view(np.uint8).reshape(rows, -1)
        idat = [packer.compress(raw.tobytes())]
        depth = 16
    else:
        lines = image.reshape(rows, cols * channels)
        step = max(1, _BLOCK_BYTES // lines.shape[1])
        above = np.zeros(lines.shape[1], dtype=np.uint8)  # the row above the first is zero
        idat = []
        for start in range(0, rows, step):
            block = lines[start : start + step]
            idat.append(packer.compress(_filter_rows(block, above, channels).tobytes()))
            above = block[-1]
        depth = 8
    idat.append(packer.flush())
    color_type = {3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", cols, rows, depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(idat))
        + _chunk(b"IEND", b"")
    )


#: Rows of an 8-bit image are filtered this many bytes at a time.
_BLOCK_BYTES = 1 << 20


def _filter_rows(x: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """The filtered scanlines (filter byte first) of the uint8 rows ``x`` with ``bpp`` bytes
    per pixel (``above``: the row before ``x[0]``), each row with the filter whose output is
    closest to zero."""
    rows, n = x.shape
    prev = np.concatenate([above[None, :], x[:-1]])  # the row above each row
    cand = np.empty((4, rows, n), dtype=np.uint8)
    cand[0] = x
    np.subtract(x, prev, out=cand[1])  # Up
    cand[2, :, :bpp] = x[:, :bpp]  # Sub: the pixel left of the first is zero
    np.subtract(x[:, bpp:], x[:, :-bpp], out=cand[2, :, bpp:])
    # Paeth: predict from left (a), above (b) and upper-left (c)
    a = np.zeros((rows, n), dtype=np.int16)
    a[:, bpp:] = x[:, :-bpp]
    b = prev.astype(np.int16)
    c = np.zeros((rows, n), dtype=np.int16)
    c[:, bpp:] = prev[:, :-bpp]
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    np.subtract(x, pred.astype(np.uint8), out=cand[3])
    # distance from zero of a byte v read as signed: min(v, 256 - v)
    score = np.minimum(cand, 0 - cand).sum(axis=2, dtype=np.uint32)
    best = score.argmin(axis=0)
    raw = np.empty((rows, 1 + n), dtype=np.uint8)
    raw[:, 0] = _FILTER_ORDER[best]
    raw[:, 1:] = cand[best, np.arange(rows)]
    return raw


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def world_file_path(png: Path) -> Path:
    return png.with_suffix(".pgw")


def aux_xml_path(png: Path) -> Path:
    return png.with_name(png.name + ".aux.xml")


def side_files(png: Path) -> list[Path]:
    """Files that may accompany a PNG."""
    return [world_file_path(png), aux_xml_path(png)]


def world_file_text(t: Affine) -> str:
    """ESRI world file: pixel sizes, rotations, then the centre of the top-left pixel."""
    cx = t.c + t.a / 2 + t.b / 2
    cy = t.f + t.d / 2 + t.e / 2
    return "\n".join(repr(float(v)) for v in (t.a, t.d, t.b, t.e, cx, cy)) + "\n"


def aux_xml_text(t: Affine, crs_wkt: str) -> str:
    """GDAL's side-car metadata: the CRS and geotransform, read by QGIS and rasterio."""
    gt = ", ".join(repr(float(v)) for v in t.to_gdal())
    return (
        "<PAMDataset>\n"
        f"  <SRS dataAxisToSRSAxisMapping=\"1,2\">{xml_escape(crs_wkt)}</SRS>\n"
        f"  <GeoTransform>{gt}</GeoTransform>\n"
        "</PAMDataset>\n"
    )


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so
    ``path`` is either absent, the old file, or the complete new file; never half-written.
    (Same folder: a rename between folders takes a file-system-wide lock in Linux, which
    serialises parallel shard jobs.) Missing parent folders are created."""
    tmp = path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def gdal_env() -> Iterator[None]:
    """The GDAL settings of the hot path, for the calling thread."""
    with rasterio.Env(**GDAL_ENV):
        yield


_thread_state = threading.local()


def enter_thread_gdal_env() -> None:
    """Thread-pool initializer: rasterio keeps GDAL settings per thread, so each worker must
    enter the hot-path settings itself (without them every open lists the whole folder)."""
    if getattr(_thread_state, "env", None) is None:
        env = rasterio.Env(**GDAL_ENV)
        env.__enter__()
        _thread_state.env = env

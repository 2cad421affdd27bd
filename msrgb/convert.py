"""Read a multispectral GeoTIFF, stretch three bands to RGB, write a PNG atomically."""

from __future__ import annotations

import os
import socket
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import rasterio
from rasterio.io import DatasetReader

from msrgb.products import Product, stretch_gain

# imageio's Pillow plugin tries ``from pillow_heif import ...`` on every call; when the package
# is absent, each failed import walks sys.path (0.3 ms per PNG, as much as the encode itself).
# Recording the absence once makes the later attempts fail at once, exactly as before.
try:
    import pillow_heif  # noqa: F401
except ImportError:
    sys.modules["pillow_heif"] = None  # type: ignore[assignment]

# Tiles are opened without georeferencing on purpose (see Converter.read).
warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)

#: GDAL settings for the hot path. Not listing the folder on every open saves about 0.4 ms per
#: file in EuroSAT's 3,000-file folders; not building the CRS from GeoTIFF keys saves another
#: 0.4-0.6 ms when no output needs georeferencing.
GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_PAM_ENABLED": "NO"}

#: PNG encodings: name -> (zlib level, zlib strategy). Huffman-only skips the LZ77 match search:
#: on real Sentinel-2 tiles it is as small as level 6 (within 0.1 %) and 2-3x faster to encode.
PNG_COMPRESSION: dict[str, tuple[int, int]] = {
    "huffman": (6, 2),
    "fast": (1, 0),
    "default": (6, 0),
    "best": (9, 0),
}


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


class Converter:
    """Converts tiles to PNGs for a fixed list of products. Thread-safe."""

    def __init__(self, products: Sequence[Product]):
        for p in products:
            if p.png_compression not in PNG_COMPRESSION:
                raise ValueError(
                    f"product {p.name!r}: png_compression {p.png_compression!r}: choose one "
                    f"of {sorted(PNG_COMPRESSION)}"
                )
        self.products = list(products)
        self._luts = {p.name: p.lut() for p in self.products}
        self._needed = sorted({i for p in self.products for i in p.indices})

    def read(self, path: str | Path) -> dict[int, np.ndarray]:
        """Read the bands the products need; returns band index (0-based) -> 2-D array.
        Raises :class:`InputError` naming the file and the problem."""
        try:
            # No georeferencing is read: none of the products needs it, and building the CRS
            # is the most expensive part of opening a small GeoTIFF.
            # DatasetReader directly: rasterio.open would set up a GDAL environment per call.
            with DatasetReader(path, driver="GTiff", sharing=False, GEOREF_SOURCES="NONE") as src:
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
                data = src.read([i + 1 for i in self._needed])
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
        return dict(zip(self._needed, data))

    def render(self, bands: dict[int, np.ndarray], product: Product) -> np.ndarray:
        """Return the (rows, cols, 3) uint8 image of ``product``."""
        stack = np.stack([bands[i] for i in product.indices], axis=-1)
        if stack.dtype == np.uint16 or stack.dtype == np.uint8:
            return self._luts[product.name][stack]
        return stretch_gain(stack, product.gain_max)

    def encode(self, rgb: np.ndarray, png_compression: str = "huffman") -> bytes:
        """PNG bytes of an (rows, cols, 3) uint8 image."""
        level, strategy = PNG_COMPRESSION[png_compression]
        return iio.imwrite(
            "<bytes>",
            rgb,
            plugin="pillow",
            extension=".png",
            compress_level=level,
            compress_type=strategy,
        )

    def convert(self, src: str | Path, dests: dict[str, Path]) -> None:
        """Convert ``src`` to one PNG per product (``dests``: product name -> PNG path)."""
        bands = self.read(src)
        for product in self.products:
            if product.name in dests:
                png = self.encode(self.render(bands, product), product.png_compression)
                try:
                    write_atomic(dests[product.name], png)
                except OSError as exc:
                    raise OutputError(
                        f"{dests[product.name]}: cannot be written ({exc.strerror or exc})"
                    ) from exc


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

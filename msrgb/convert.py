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
        """Read the bands the products need; returns band index (0-based) -> 2-D array."""
        try:
            # No georeferencing is read: none of the products needs it, and building the CRS
            # is the most expensive part of opening a small GeoTIFF.
            # DatasetReader directly: rasterio.open would set up a GDAL environment per call.
            with DatasetReader(path, driver="GTiff", sharing=False, GEOREF_SOURCES="NONE") as src:
                count, dtype = src.count, src.dtypes[0]
                missing = [i + 1 for i in self._needed if i >= count]
                if missing:
                    raise InputError(
                        f"{path}: has {count} band(s), but the products need band(s) "
                        f"{missing} (1-based)"
                    )
                data = src.read([i + 1 for i in self._needed])
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(f"{path}: cannot be read as a GeoTIFF ({exc})") from exc
        except InputError:
            raise
        except Exception as exc:  # a truncated strip surfaces as a generic rasterio error
            raise InputError(f"{path}: reading failed ({type(exc).__name__}: {exc})") from exc
        if data.dtype.kind not in "ui":
            raise InputError(f"{path}: data type {dtype} is not an integer type")
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
                write_atomic(dests[product.name], png)


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

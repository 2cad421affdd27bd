"""GDAL: the settings of the hot path and of images read in blocks, and errors that name the file
and the problem (a truncated file, no JPEG 2000 driver, not a TIFF at all).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import rasterio

from msrgb.errors import InputError, MsrgbError, ReadInBlocks
from msrgb.storage.locations import HttpPath, Location, RemotePath

if TYPE_CHECKING:
    from msrgb.readers.zipped import ZipMember

#: GDAL settings for the hot path. Not listing the folder on every open matters in folders of
#: thousands of files; not building the CRS from GeoTIFF keys matters when no output needs
#: georeferencing. Uncompressed TIFFs read from the file (over IN_MEMORY_BYTES) go through a
#: memory map instead of GDAL's block cache; GDAL checks the strips against the file size
#: first, so a truncated file is still a clean error. bench/RESULTS.md has the figures.
GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_PAM_ENABLED": "NO",
    "GTIFF_VIRTUAL_MEM_IO": "YES",
    # GDAL's block cache defaults to 5 % of the RAM, which a quicklook of a huge image fills
    "GDAL_CACHEMAX": 256,
}


#: GDAL settings for images read in blocks: no memory map (its pages of the whole file would
#: count as the job's memory) and a small block cache (GDAL's default is 5 % of the RAM).
LARGE_IMAGE_ENV = {"GTIFF_VIRTUAL_MEM_IO": "NO", "GDAL_CACHEMAX": 64}


#: Data types an input may have. Integer reflectances (EuroSAT: uint16) take lookup tables;
#: the others are stretched in float64, with NaN and infinities as no data.
SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")


def check_dtype(path: str | Location | ZipMember, dtype: str) -> None:
    """Fail with :class:`InputError` unless ``dtype`` is one msrgb can stretch."""
    if dtype not in SUPPORTED_DTYPES:
        raise InputError(
            f"{path}: data type {dtype} is not supported (expected one of {', '.join(SUPPORTED_DTYPES)})"
        )


@contextmanager
def gdal_env() -> Iterator[None]:
    """The GDAL settings of the hot path, for the calling thread."""
    with rasterio.Env(**GDAL_ENV):
        yield


thread_state = threading.local()


def enter_thread_gdal_env() -> None:
    """Thread-pool initializer: rasterio keeps GDAL settings per thread, so each worker must
    enter the hot-path settings itself (without them every open lists the whole folder)."""
    if getattr(thread_state, "env", None) is None:
        env = rasterio.Env(**GDAL_ENV)
        env.__enter__()
        thread_state.env = env


def suffix_of(path: str | Location | ZipMember) -> str:
    return os.path.splitext(str(path))[1].lower()


def describe_unreadable(path: str | Location | ZipMember, data: bytes | None = None) -> str | None:
    """A plain reason for a file that cannot even be opened, or None to let GDAL explain;
    an object in object storage is judged on its bytes (``data``), when they were read."""
    if isinstance(path, RemotePath):
        return describe_content(data, suffix_of(path)) if data is not None else None
    if not isinstance(path, (str, Path)):  # a file inside a zip: GDAL explains
        return None
    path = Path(path)
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
    return describe_content(head, path.suffix.lower())


def describe_content(head: bytes, suffix: str) -> str | None:
    """A plain reason for a file whose first bytes are ``head`` that GDAL cannot open, or None."""
    if not head:
        return "is empty (0 bytes)"
    if suffix == ".jp2":
        if head[:4] not in JP2_SIGNATURES:
            return "is not a JPEG 2000 file (it does not start with a JPEG 2000 signature)"
        if not has_jp2_driver():
            return (
                "cannot be read: this GDAL has no JPEG 2000 driver (JP2OpenJPEG); the "
                "rasterio wheels from PyPI include it"
            )
        return None
    if head[:2] not in (b"II", b"MM"):
        return "is not a TIFF file (it does not start with a TIFF header)"
    return None


@functools.cache
def has_jp2_driver() -> bool:
    with rasterio.Env() as env:
        return "JP2OpenJPEG" in env.drivers()


def root_message(exc: BaseException) -> str:
    """The message of the innermost cause: rasterio wraps GDAL's precise error ("IReadBlock
    failed ... TIFFReadEncodedStrip() failed") in "Read failed. See previous exception"."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc)


@contextmanager
def input_errors(path: str | Location | ZipMember, data: bytes | None = None) -> Iterator[None]:
    """Turn what rasterio and GDAL raise while reading ``path`` (whose bytes are ``data``, if
    read) into :class:`InputError` naming the file and the problem; msrgb's own errors pass
    through."""
    try:
        yield
    except (MsrgbError, ReadInBlocks):
        raise
    except rasterio.errors.RasterioIOError as exc:
        reason = describe_unreadable(path, data)
        if reason is not None:
            raise InputError(f"{path}: {reason}") from exc
        kind = "JPEG 2000 file" if suffix_of(path) == ".jp2" else "GeoTIFF"
        raise InputError(
            f"{path}: cannot be read as a {kind}, it may be truncated or damaged "
            f"(GDAL: {_scrubbed(root_message(exc), path)})"
        ) from exc
    except Exception as exc:  # a truncated strip surfaces as a generic rasterio error
        raise InputError(
            f"{path}: reading failed, the file may be truncated or damaged "
            f"({type(exc).__name__}: {_scrubbed(root_message(exc), path)})"
        ) from exc


def _scrubbed(message: str, path: str | Location | ZipMember) -> str:
    """GDAL's ``message`` without the signature an http(s) URL's query may hold."""
    return path.scrub(message) if isinstance(path, HttpPath) else message


#: The first 4 bytes of a JPEG 2000 file (JP2 box) or codestream (J2K)
JP2_SIGNATURES = (b"\x00\x00\x00\x0c", b"\xff\x4f\xff\x51")

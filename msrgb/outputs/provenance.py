"""Provenance: which library versions made an output, as one line and a short id."""

from __future__ import annotations

import hashlib
import zlib

import numpy as np
import rasterio


def library_versions() -> str:
    """The versions that determine the PNG bytes, as one line (the PNG encoder is msrgb's own,
    on numpy, zlib and zlib-ng)."""
    from zlib_ng import zlib_ng

    from msrgb.version import __version__

    parts = {
        "msrgb": __version__,
        "rasterio": rasterio.__version__,
        "GDAL": rasterio.__gdal_version__,
        "numpy": np.__version__,
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "zlib-ng": zlib_ng.ZLIBNG_RUNTIME_VERSION,
    }
    return " ".join(f"{k}={v}" for k, v in parts.items())


def environment_id(versions: str) -> str:
    return hashlib.sha256(versions.encode()).hexdigest()[:12]

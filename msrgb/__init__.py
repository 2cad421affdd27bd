"""msrgb: multispectral GeoTIFFs to RGB images, the conversion of the msrgb Snakemake workflow.

The Python API (msrgb.api) is available from the package itself::

    import msrgb
    rgb = msrgb.convert_file("EuroSAT/AnnualCrop/AnnualCrop_1.tif")   # (64, 64, 3) uint8
    rgb = msrgb.to_rgb(ms)           # ms: (rows, cols, 13) array in EuroSAT band order

It is loaded on first use, so that the workflow's planning modules do not load GDAL.
"""

from __future__ import annotations

from typing import Any

from msrgb.version import __version__ as __version__  # the package says its version

#: the public API: msrgb.api's functions, and the errors every user-caused problem raises
__all__ = [
    "MsrgbError",
    "InputError",
    "ProductError",
    "convert_file",
    "png_bytes",
    "product_of",
    "read_tile",
    "to_rgb",
]

_API = {"convert_file", "png_bytes", "product_of", "read_tile", "to_rgb"}
_ERRORS = {"MsrgbError", "InputError", "ProductError"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from msrgb import api

        return getattr(api, name)
    if name in _ERRORS:
        from msrgb import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'msrgb' has no attribute {name!r}")

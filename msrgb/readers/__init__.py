"""Reading input images: the bands the products need, from a stacked file, a folder of band
files, a zipped Sentinel-2 product or a STAC Item's assets, with GDAL (or numpy for plain TIFFs).

Owns: GDAL settings and errors (``gdal``), plain TIFFs (``tiff``), stacked files (``stacked``),
band files (``bands``, ``band_image``, ``band_blocks``), zipped products (``zipped``), the one
interface over every kind (``images``).
May import: errors, tile, storage, config, radiometry, sources. Importing this package itself
loads no GDAL (planning uses :func:`lazy_scaled_bands`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from msrgb.config.products import Product
    from msrgb.sources.discovery import Source
    from msrgb.sources.stac import InputDir


def lazy_scaled_bands(input_dir: InputDir, products: Sequence[Product]) -> Callable[[Source], set[str]]:
    """:func:`msrgb.readers.images.scaled_bands_of`, set up on its first call: it loads GDAL,
    which only records of versions before radiometric offsets need (rarely), and planning does
    without otherwise."""
    found: list[Callable[[Source], set[str]]] = []

    def scaled(src: Source) -> set[str]:
        if not found:
            from msrgb.readers.images import scaled_bands_of

            found.append(scaled_bands_of(input_dir, products))
        return found[0](src)

    return scaled

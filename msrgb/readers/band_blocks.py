"""Reading band files a block of rows at a time (a whole Sentinel-2 scene): bands on the finest
grid read by window, coarser ones read whole once and resampled per block.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.windows import Window

from msrgb.radiometry.decide import Candidates
from msrgb.radiometry.scaling import Scaling
from msrgb.readers.band_image import BandImage
from msrgb.readers.gdal import input_errors
from msrgb.readers.stacked import (
    LargeImage,
    quicklook_shape,
)
from msrgb.readers.zipped import ZipMember
from msrgb.storage.locations import Location
from msrgb.tile import Tile

if TYPE_CHECKING:
    from msrgb.readers.bands import BandReader


@dataclass
class OpenBand:
    """One band file, open."""

    rel: str
    path: Location | ZipMember
    #: GDAL's dataset, or where the file is read whole and plain msrgb.readers.bands.PlainBandFile
    src: DatasetReader
    transform: Affine
    crs: CRS | None
    #: the radiometric scaling the file itself declares (GDAL's scale and offset), or None
    scaling: Scaling | None = None


@dataclass(frozen=True)
class TargetGrid:
    """The grid every band is read onto: the finest band's."""

    rows: int
    cols: int
    transform: Affine
    crs: CRS | None
    nodata: float | None

    def holds(self, band: OpenBand) -> bool:
        """Whether ``band`` is on this grid (read as it is, no resampling)."""
        return band.transform == self.transform and band.src.shape == (self.rows, self.cols)

    def crs_wkt(self) -> str | None:
        return self.crs.to_wkt() if self.crs is not None else None


#: the longest side of the preview a large image's data check looks at (msrgb.radiometry.decide)
PREVIEW_FOR_CHECK = 1024


#: Stands in for the CRS of band files whose CRS was compared through their tags only: the
#: resampling then goes from one grid to another in the same CRS, which is all it needs.
SAME_CRS = CRS.from_epsg(3857)


class LargeBandImage:
    """An image of band files read a block of rows at a time (the interface of
    :class:`msrgb.readers.stacked.LargeImage`): bands on the finest grid are read by window, coarser
    bands are read whole once (a quarter or less of the pixels) and resampled per block."""

    BLOCK_BYTES = LargeImage.BLOCK_BYTES

    def __init__(
        self, reader: BandReader, image: BandImage, bands: list[OpenBand], target: TargetGrid, scaling: dict[int, Candidates]
    ):
        self.reader, self.image, self.bands, self.target = reader, image, bands, target
        self.scaling = scaling
        self.overrides: frozenset[str] = frozenset()
        self.rows, self.cols = target.rows, target.cols
        self.path = image.folder
        dtype = np.dtype(bands[0].src.dtypes[0])
        self.is_float = dtype.kind == "f"
        per_row = self.cols * max(1, len(bands)) * dtype.itemsize
        self.block_rows = max(1, self.BLOCK_BYTES // per_row)
        self._coarse: dict[int, np.ndarray] = {}
        # the georeferencing of the whole image, once (building the WKT is not free)
        self._crs_wkt = target.crs_wkt() if reader.georef else None

    def tile(self, bands: dict[int, np.ndarray]) -> Tile:
        tile = Tile(bands, self.target.nodata, scaling=self.scaling, overrides=self.overrides)
        if self.reader.georef:
            tile.transform = self.target.transform
            tile.crs_wkt = self._crs_wkt
        return tile

    def _rows(self, index: int, band: OpenBand, row: int, height: int) -> np.ndarray:
        if self.target.holds(band):
            with input_errors(band.path):
                return band.src.read(1, window=Window(0, row, self.cols, height))
        if index not in self._coarse:
            with input_errors(band.path):
                self._coarse[index] = band.src.read(1)
        transform = self.target.transform @ Affine.translation(0, row)
        return self.reader._resampled(band, self._coarse[index], self.target, transform, height)

    def blocks(self) -> Iterator[Tile]:
        for row in range(0, self.rows, self.block_rows):
            height = min(self.block_rows, self.rows - row)
            yield self.tile(
                {i: self._rows(i, b, row, height) for i, b in zip(self.reader.needed, self.bands)}
            )

    def band(self, index: int) -> np.ndarray:
        band = self.bands[self.reader.needed.index(index)]
        return np.concatenate(
            [self._rows(index, band, row, min(self.block_rows, self.rows - row)) for row in range(0, self.rows, self.block_rows)]
        )

    def preview(self, longest: int = 512) -> Tile:
        rows, cols = quicklook_shape(self.rows, self.cols, longest)
        bands = {}
        for i, b in zip(self.reader.needed, self.bands):
            with input_errors(b.path):
                bands[i] = b.src.read(1, out_shape=(rows, cols), resampling=Resampling.nearest)
        return self.tile(bands)


def _bounds(transform: Affine, rows: int, cols: int) -> tuple[float, float, float, float]:
    x0, y0 = transform @ (0, 0)
    x1, y1 = transform @ (cols, rows)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _show(bounds: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in bounds) + ")"

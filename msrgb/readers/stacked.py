"""Reading a file that holds all bands of an image (EuroSAT tiles, stacked GeoTIFFs): opened
once, the bands the products need read in memory (plain TIFFs by msrgb.readers.tiff, others by
GDAL) or, for images too large, a block of rows at a time."""

from __future__ import annotations

import hashlib
import os
import stat
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import DatasetReader, MemoryFile
from rasterio.windows import Window

from msrgb.config.products import Product
from msrgb.errors import InputError, ReadInBlocks
from msrgb.radiometry.decide import Candidates
from msrgb.radiometry.scaling import from_gdal
from msrgb.readers.gdal import (
    LARGE_IMAGE_ENV,
    check_dtype,
    describe_unreadable,
    input_errors,
)
from msrgb.readers.tiff import read_plain
from msrgb.sources.geotags import image_size
from msrgb.storage.locations import Location, RemotePath
from msrgb.storage.remote import get as get_object
from msrgb.tile import Tile

# Tiles are opened without georeferencing on purpose (see TileReader.read).
warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)

#: Input files up to this size are read once and parsed by GDAL in memory (TileReader.load).
IN_MEMORY_BYTES = 64 * 2**20


#: Images larger than this many pixels are bad inputs unless max_size makes a quicklook of them
#: (the ``max_pixels`` setting): a whole Sentinel-2 scene at 10 m is 121 million
MAX_PIXELS = 200_000_000


#: how to convert files of another band count (the products' band_map)
BAND_MAP_HINT = (
    "for files with other bands set the product's band_map (the file's bands in order, such "
    "as band_map: [B04, B03, B02] for an RGB file) and bands (docs/products.md)"
)


class TileReader:
    """Reads, once for all products, the bands they need from an input file. Thread-safe."""

    def __init__(
        self, products: Sequence[Product], in_memory_bytes: int = IN_MEMORY_BYTES, max_pixels: int = MAX_PIXELS
    ):
        self.products = list(products)
        self.in_memory_bytes = in_memory_bytes  # larger inputs are hashed in chunks, read from disk
        self.max_pixels = max_pixels
        self.needed = sorted({i for p in self.products for i in p.indices})
        self.georef = any(p.needs_georef for p in self.products)
        self.max_size = self.products[0].max_size if self.products else None
        self.resampling = Resampling[self.products[0].resampling if self.products else "bilinear"]

    def load(self, path: str | Location) -> tuple[bytes | None, str]:
        """Open ``path`` once: its bytes (None for files over ``in_memory_bytes``, which GDAL
        then reads from disk) and its SHA-256. An object in S3 is always read whole (GDAL then
        reads it from memory). Raises :class:`InputError`."""
        if isinstance(path, RemotePath):
            data = get_object(path)
            return data, hashlib.sha256(data).hexdigest()
        try:
            # O_NONBLOCK: a FIFO named like a TIFF must not hang the job (no effect on files)
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise InputError(f"{path}: is not a regular file")
                if st.st_size <= self.in_memory_bytes:
                    data = read_whole(fd, st.st_size)
                    return data, hashlib.sha256(data).hexdigest()
                with open(fd, "rb", closefd=False) as fh:
                    return None, hashlib.file_digest(fh, "sha256").hexdigest()
            finally:
                os.close(fd)
        except OSError as exc:
            reason = describe_unreadable(Path(path))
            raise InputError(f"{path}: {reason or f'cannot be read ({exc.strerror})'}") from exc

    def read(self, path: str | Location, data: bytes | None = None) -> Tile:
        """Read the bands the products need; from ``data`` (the file's bytes, already read)
        when given, which spares GDAL a second open of the file. Raises :class:`InputError`
        naming the file and the problem, :class:`ReadInBlocks` for an image whose needed bands
        take more than ``in_memory_bytes`` decoded (without ``max_size``)."""
        if isinstance(path, RemotePath) and data is None:
            data = self.load(path)[0]
        with input_errors(path, data):
            if data is not None:
                tile = self._read_plain(path, data)
                if tile is not None:
                    return tile
                size = image_size(data)
                if size is not None:
                    self.check_pixels(path, *size)
                try:
                    with MemoryFile(data) as memfile:
                        return self._read(memfile.name, path)
                except (InputError, ReadInBlocks):
                    raise
                except Exception:
                    if isinstance(path, RemotePath):
                        raise  # no file to open: GDAL's message about the bytes
                    # else GDAL fails on the file itself below, with its message about the file
            assert not isinstance(path, RemotePath)  # read above, from its bytes
            return self._read(path, path)

    def _read_plain(self, path: str | Location, data: bytes) -> Tile | None:
        """The tile of a plain TIFF read without GDAL (:mod:`msrgb.readers.tiff`), or None where GDAL
        must read it: another kind of file, georeferencing wanted, a quicklook to make, or
        anything GDAL would refuse (it then says why)."""
        if self.georef:
            return None
        plain = read_plain(data, self.needed, self.in_memory_bytes)
        if plain is None or any(plain.count != len(p.band_map) for p in self.products):
            return None
        rows, cols = next(iter(plain.bands.values())).shape
        if quicklook_shape(rows, cols, self.max_size) != (rows, cols):
            return None
        self.check_pixels(path, cols, rows)
        return Tile(plain.bands, plain.nodata)

    def _open(self, name: str | Path, path: str | Location) -> DatasetReader:
        # Georeferencing is read only when a product writes it: building the CRS is the most
        # expensive part of opening a small GeoTIFF. DatasetReader directly: rasterio.open
        # would set up a GDAL environment per call.
        options = {} if self.georef else {"GEOREF_SOURCES": "NONE"}
        src = DatasetReader(name, driver="GTiff", sharing=False, **options)
        try:
            self._check(src, path)
        except BaseException:
            src.close()
            raise
        return src

    def check_pixels(self, path: object, cols: int, rows: int) -> None:
        """Fail when an image is larger than ``max_pixels``, unless ``max_size`` makes a
        quicklook of it."""
        if self.max_size is None and rows * cols > self.max_pixels:
            raise InputError(
                f"{path}: is too large: {cols:,} x {rows:,} pixels ({rows * cols / 1e6:,.0f} million), "
                f"more than max_pixels ({self.max_pixels:,}); set max_size for a quicklook, or "
                "raise max_pixels if the machine has the memory"
            )

    def _check(self, src: DatasetReader, path: str | Location) -> None:
        self.check_pixels(path, src.width, src.height)
        count, dtype = src.count, src.dtypes[0]
        for p in self.products:
            if count != len(p.band_map):
                raise InputError(
                    f"{path}: has {count} band(s), but product {p.name!r} expects "
                    f"{len(p.band_map)} ({' '.join(p.band_map)}); {BAND_MAP_HINT}"
                )
        check_dtype(path, dtype)
        if self.georef and (src.crs is None or src.transform.is_identity):
            raise InputError(
                f"{path}: has no georeferencing (CRS and transform), but a product asks for "
                "a world file"
            )

    def _georef(self, src: DatasetReader, tile: Tile) -> Tile:
        """``tile`` with the georeferencing (when a product writes it) and the radiometric
        scaling of ``src``."""
        if self.georef:
            tile.transform, tile.crs_wkt = src.transform, src.crs.to_wkt()
        tile.scaling = file_scaling(src, self.needed)
        return tile

    def _read(self, name: str | Path, path: str | Location) -> Tile:
        """Open ``name`` (the file ``path`` or a copy of it in memory) and read the bands."""
        with self._open(name, path) as src:
            rows, cols = quicklook_shape(src.height, src.width, self.max_size)
            if (rows, cols) == (src.height, src.width):
                itemsize = np.dtype(src.dtypes[0]).itemsize
                if rows * cols * len(self.needed) * itemsize > self.in_memory_bytes:
                    raise ReadInBlocks(path)
                bands = src.read([i + 1 for i in self.needed])
                return self._georef(src, Tile(dict(zip(self.needed, bands)), src.nodata))
            # a quicklook: GDAL reads from the overviews where the file has them
            shape = (len(self.needed), rows, cols)
            bands = src.read([i + 1 for i in self.needed], out_shape=shape, resampling=self.resampling)
            tile = self._georef(src, Tile(dict(zip(self.needed, bands)), src.nodata))
            if tile.transform is not None:
                tile.transform = tile.transform @ Affine.scale(src.width / cols, src.height / rows)
            return tile

    @contextmanager
    def open_large(self, path: str | Location, data: bytes | None = None) -> Iterator[LargeImage]:
        """Open an image to read in blocks of rows (:class:`LargeImage`); a remote one from its
        bytes (``data``, fetched if not given). GDAL's errors, here and in the block reads, become
        :class:`InputError` naming ``path``."""
        with rasterio.Env(**LARGE_IMAGE_ENV), ExitStack() as stack:
            name: str | Path = path if not isinstance(path, RemotePath) else ""
            if isinstance(path, RemotePath):  # read whole, then in blocks from memory
                data = data if data is not None else self.load(path)[0]
                assert data is not None
                name = stack.enter_context(MemoryFile(data)).name
            with input_errors(path, data):
                src = self._open(name, path)
            with src:
                yield LargeImage(self, src, path)


class LargeImage:
    """An open input read a block of rows at a time, so that memory does not grow with the
    image (a whole Sentinel-2 scene has 120 million pixels per band)."""

    #: bytes of the needed bands read at a time
    BLOCK_BYTES = 32 * 2**20

    def __init__(self, reader: TileReader, src: DatasetReader, path: str | Location):
        self.reader, self.src, self.path = reader, src, path
        self.rows, self.cols = src.height, src.width
        self.is_float = np.dtype(src.dtypes[0]).kind == "f"
        itemsize = np.dtype(src.dtypes[0]).itemsize
        per_row = self.cols * max(1, len(reader.needed)) * itemsize
        strip = max(1, src.block_shapes[0][0])
        self.block_rows = max(strip, self.BLOCK_BYTES // per_row // strip * strip)
        # the georeferencing of the whole image, once (building the WKT is not free)
        self._georef = reader._georef(src, Tile({}, src.nodata))

    def tile(self, bands: dict[int, np.ndarray]) -> Tile:
        """A block (or none: ``{}``) of the needed bands, with the image's nodata and
        georeferencing."""
        g = self._georef
        return Tile(bands, g.nodata, g.transform, g.crs_wkt, g.scaling)

    def blocks(self) -> Iterator[Tile]:
        """The needed bands, a block of rows at a time, top to bottom."""
        needed = self.reader.needed
        for row in range(0, self.rows, self.block_rows):
            height = min(self.block_rows, self.rows - row)
            window = Window(0, row, self.cols, height)
            with input_errors(self.path):
                bands = self.src.read([i + 1 for i in needed], window=window)
            yield self.tile(dict(zip(needed, bands)))

    def band(self, index: int) -> np.ndarray:
        """One whole band (0-based ``index``)."""
        with input_errors(self.path):
            return self.src.read(index + 1)

    def preview(self, longest: int = 512) -> Tile:
        """The needed bands at most ``longest`` px on the longest side (nearest neighbour)."""
        scale = max(1, -(-max(self.rows, self.cols) // longest))
        shape = (len(self.reader.needed), -(-self.rows // scale), -(-self.cols // scale))
        with input_errors(self.path):
            bands = self.src.read([i + 1 for i in self.reader.needed], out_shape=shape)
        return self.tile(dict(zip(self.reader.needed, bands)))


def file_scaling(src: DatasetReader, needed: Sequence[int]) -> dict[int, Candidates]:
    """Band index (0-based) -> the scaling GDAL's per-band scale and offset declare, for the
    ``needed`` bands that have one."""
    scales, offsets = src.scales, src.offsets
    found = {}
    for i in needed:
        scaling = from_gdal(scales[i], offsets[i])
        if scaling is not None:
            found[i] = Candidates(file=scaling)
    return found


def quicklook_shape(rows: int, cols: int, max_size: int | None) -> tuple[int, int]:
    """The image size for a longest side of at most ``max_size`` px (None: full size)."""
    longest = max(rows, cols)
    if max_size is None or longest <= max_size:
        return rows, cols
    scale = max_size / longest
    return max(1, round(rows * scale)), max(1, round(cols * scale))


def read_whole(fd: int, size: int) -> bytes:
    """The whole content of the regular file ``fd`` whose size ``fstat`` gave as ``size``: one
    read of one byte more than that, which comes back short at the end of the file (more reads
    only if the file has grown or shrunk meanwhile, or the system gave less)."""
    data = os.read(fd, size + 1)
    if len(data) == size:
        return data
    parts = [data]
    while parts[-1]:
        parts.append(os.read(fd, 1 << 20))
    return b"".join(parts)

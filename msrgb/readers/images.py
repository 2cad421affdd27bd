"""One interface for every kind of input image (the model is rio-tiler's ``BaseReader`` /
``MultiBaseReader``: one reader per input, the same methods whatever is behind it).

:class:`ImageReaders` opens an input (a :class:`msrgb.sources.discovery.Source` under the input folder, or a
file) as an :class:`InputImage`: a file holding all bands (:class:`StackedImage`) or a folder of
band files (:class:`BandFolderImage`); an input under an ``s3://`` prefix is either kind, read
through :mod:`msrgb.storage.remote`; STAC items are meant to be a further kind. Every kind answers the same questions, so no caller asks which kind it has:

* ``where``: the file or folder named in messages;
* ``paths()``: the local files it is read from (for read-ahead);
* ``read()``: the bands the products need, in memory (:class:`Reading`), or
  :class:`msrgb.readers.stacked.ReadInBlocks` when they are too large;
* ``open_large()``: the same image to read in blocks of rows;
* ``declared_files()``: the files whose tags may declare a radiometric scale or offset, and a
  Sentinel-2 product's metadata file.

Every :class:`Reading` carries the provenance of what was read: the SHA-256 of the one file, or
of each band file (and metadata file) with the digest each product's image is made from.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import rasterio.errors

from msrgb.config.products import Product
from msrgb.errors import InputError, ReadInBlocks
from msrgb.radiometry.scaling import read_safe_metadata
from msrgb.readers.band_blocks import LargeBandImage
from msrgb.readers.band_image import BandImage, ZipLoaded, source_digest
from msrgb.readers.bands import BandReader, declared_scaling
from msrgb.readers.stacked import IN_MEMORY_BYTES, MAX_PIXELS, LargeImage, TileReader
from msrgb.readers.zipped import ZipMember
from msrgb.sources.discovery import Source
from msrgb.sources.stac import InputDir, ItemRef
from msrgb.storage.locations import Location, RemotePath
from msrgb.tile import Tile


@dataclass
class Reading:
    """What reading an input gave: the bands in memory (``tile``) or an image to read in blocks
    (``large``), and the provenance of the files read."""

    tile: Tile | None = None
    large: LargeImage | LargeBandImage | None = None
    #: SHA-256 of everything read (one file's, or the digest of all band files)
    source_sha: str = ""
    #: product name -> the digest of the files its image is made from, where it differs
    product_sources: dict[str, str] = field(default_factory=dict)


class InputImage(ABC):
    """One input image, whatever its kind."""

    where: Location | ItemRef

    @abstractmethod
    def paths(self) -> list[Location]:
        """The files (or objects in S3) the image is read from."""

    @abstractmethod
    def read(self) -> Reading:
        """The needed bands in memory. Raises :class:`msrgb.errors.InputError` naming the file
        and the problem, :class:`ReadInBlocks` when the image must be read in blocks."""

    @abstractmethod
    def open_large(self) -> AbstractContextManager[Reading]:
        """The image open to read in blocks of rows (``Reading.large``)."""

    @abstractmethod
    def declared_files(self) -> tuple[list[tuple[str | None, Location]], Path | None]:
        """(band or None for all, file) whose tags may declare a radiometric scale or offset,
        and the metadata file of a Sentinel-2 product (or None)."""


class StackedImage(InputImage):
    """A file holding all bands of an image (EuroSAT tiles, stacked GeoTIFFs): opened once,
    its bytes hashed and, up to the reader's ``in_memory_bytes``, parsed by GDAL from memory."""

    def __init__(self, path: Location, reader: TileReader):
        self.where = self._path = path
        self._reader = reader
        self._sha: str | None = None
        self._data: bytes | None = None

    def paths(self) -> list[Location]:
        return [self._path]

    def read(self) -> Reading:
        data, self._sha = self._reader.load(self._path)
        if data is None and self._reader.max_size is None:  # a large file: in blocks of rows
            raise ReadInBlocks(self._path)
        try:
            return Reading(tile=self._reader.read(self._path, data), source_sha=self._sha)
        except ReadInBlocks:
            if isinstance(self._path, RemotePath):
                self._data = data  # fetched once: read in blocks from memory
            raise

    @contextmanager
    def open_large(self) -> Iterator[Reading]:
        sha = self._sha if self._sha is not None else self._reader.load(self._path)[1]
        data, self._data = self._data, None
        with self._reader.open_large(self._path, data) as image:
            yield Reading(large=image, source_sha=sha)

    def declared_files(self) -> tuple[list[tuple[str | None, Location]], Path | None]:
        return [(None, self._path)], None


class BandFolderImage(InputImage):
    """A folder of band files (BigEarthNet patches, Sentinel-2 SAFE products, per-band COGs):
    the needed bands on one grid, with the provenance of each file."""

    def __init__(self, image: BandImage, reader: BandReader):
        self.image, self.where, self._reader = image, image.folder, reader
        #: a zipped product's bytes and SHA-256, loaded once for both ways of reading it
        self._zip = ZipLoaded() if image.zipped is not None else None

    def paths(self) -> list[Location]:
        return self.image.paths()

    def read(self) -> Reading:
        if self._reader.is_large(self.image):
            raise ReadInBlocks(self.image.folder)
        tile, shas = self._reader.read(self.image, self._zip)
        return self._reading(shas, tile=tile)

    @contextmanager
    def open_large(self) -> Iterator[Reading]:
        with self._reader.open_large(self.image, self._zip) as (image, shas):
            yield self._reading(shas, large=image)

    def declared_files(self) -> tuple[list[tuple[str | None, Location]], Path | None]:
        metadata = self.image.metadata
        files: list[tuple[str | None, Location]] = [
            (band, path) for band, _, path in self.image.files if not isinstance(path, ZipMember)
        ]
        return files, metadata[1] if metadata is not None and isinstance(metadata[1], Path) else None

    def _reading(
        self, shas: dict[str, str], tile: Tile | None = None, large: LargeBandImage | None = None
    ) -> Reading:
        """The files each product is made from (of those read for all products): the files of
        its bands, and the files read for every band (a product's metadata file)."""
        pairs = list(shas.items())  # the needed bands' files in order, then the others
        if self.image.zipped is not None:  # everything was read from the one zip
            return Reading(tile, large, source_digest(pairs), {p.name: source_digest(pairs) for p in self._reader.products})
        needed = self._reader.needed
        common = pairs[len(needed) :]
        sources = {}
        for p in self._reader.products:
            used = dict.fromkeys(p.indices)
            sources[p.name] = source_digest([pairs[needed.index(i)] for i in used] + common)
        return Reading(tile, large, source_digest(pairs), sources)


class ImageReaders:
    """Opens inputs for a fixed list of products: the readers of every kind, made once. Thread
    safe."""

    def __init__(
        self, products: Sequence[Product], in_memory_bytes: int = IN_MEMORY_BYTES, max_pixels: int = MAX_PIXELS
    ):
        self.tiles = TileReader(products, in_memory_bytes, max_pixels)
        self.bands = BandReader(products, in_memory_bytes, max_pixels)

    def open(self, input_dir: InputDir, src: Source) -> InputImage:
        """The input ``src`` found under ``input_dir`` (msrgb.sources.discovery)."""
        if src.files is None:
            return StackedImage(input_dir / src.rel, self.tiles)
        return BandFolderImage(BandImage.of(input_dir, src), self.bands)

    def of(self, image: str | Path | BandImage | InputImage) -> InputImage:
        """An input given directly: a file, a :class:`BandImage`, or one already open."""
        if isinstance(image, InputImage):
            return image
        if isinstance(image, BandImage):
            return BandFolderImage(image, self.bands)
        return StackedImage(Path(image), self.tiles)


def scaled_bands_of(input_dir: InputDir, products: Sequence[Product]) -> Callable[[Source], set[str]]:
    """For msrgb.planning.work.work_to_do: the bands of an input that declare a radiometric scaling."""
    band_map = products[0].band_map if products else ()
    inputs = ImageReaders(products)
    return lambda src: declared_scaling_bands(inputs.open(input_dir, src), band_map)


def declared_scaling_bands(image: InputImage, band_map: Sequence[str]) -> set[str]:
    """The bands of ``image`` whose files (or product metadata file) declare a radiometric
    scale or offset: the inputs whose images change now that msrgb applies them. Reads the TIFF
    tags only (GDAL for other files); an input that cannot be read counts as changed, so that
    its conversion reports it."""
    files, metadata = image.declared_files()
    found: set[str] = set()
    if metadata is not None:
        try:
            found |= set(read_safe_metadata(metadata, [band for band, _ in files if band is not None]))
        except InputError:
            return set(band_map)
    for band, path in files:
        try:
            declared = declared_scaling(path)
        except (OSError, ValueError, rasterio.errors.RasterioIOError):
            return set(band_map)
        for index in declared:
            if band is not None:
                found.add(band)
            elif index < len(band_map):
                found.add(band_map[index])
    return found

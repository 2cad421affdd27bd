"""Converting one input file into the images of every product: read once (msrgb.readers.stacked), render
(msrgb.render.render), encode (msrgb.render.pngenc) and write atomically with side files (msrgb.storage.files,
msrgb.outputs.georef)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from msrgb.config.products import Product
from msrgb.errors import InputError, ProductError, ReadInBlocks
from msrgb.outputs.georef import aux_xml_text, world_file_text
from msrgb.radiometry.scaling import looks_like_offset_data, note_missing_offset
from msrgb.readers.band_blocks import LargeBandImage
from msrgb.readers.band_image import BandImage
from msrgb.readers.images import ImageReaders, InputImage
from msrgb.readers.stacked import IN_MEMORY_BYTES, MAX_PIXELS, LargeImage
from msrgb.render.encoding import encode_image
from msrgb.render.pngenc import PNG_COMPRESSION, PngStream
from msrgb.render.recipe import RECIPE_KEY, RecipeWriter, radiometry_text
from msrgb.render.render import (
    ClipCounter,
    Renderer,
    band_percentiles,
    band_scalings,
    clip_figures,
    float_range_note,
    pixel_scalings,
    product_bands,
)
from msrgb.storage.files import aux_xml_path, world_file_path, write_output
from msrgb.storage.locations import S3Path
from msrgb.storage.remote import put_later
from msrgb.tile import Tile

log = logging.getLogger("msrgb")

#: the note for inputs named like Sentinel-2 data of baseline 04.00+ that carry no offset
MISSING_OFFSET_NOTE = note_missing_offset()

#: how often a long image (read in blocks) logs how far it is
LARGE_IMAGE_PROGRESS_SECONDS = 10.0

__all__ = ["Converted", "Converter"]


@dataclass
class Converted:
    """What :meth:`Converter.convert` made of one input."""

    source_sha: str
    #: product name -> SHA-256 of the image written
    image_sha: dict[str, str] = field(default_factory=dict)
    #: warnings about the input's values under a product's settings (float_range_note)
    notes: list[str] = field(default_factory=list)
    #: product name -> the files it was made from with their SHA-256, for images made of band
    #: files (msrgb.readers.images.Reading); ``source_sha`` for the others
    product_sources: dict[str, str] = field(default_factory=dict)
    #: product name -> clip figures of its image (msrgb.render.render.clip_figures)
    clipping: dict[str, tuple[float, ...]] = field(default_factory=dict)
    #: product name -> the radiometric scale and offset of its bands, where one applied
    #: (msrgb.render.recipe.radiometry_text)
    radiometry: dict[str, str] = field(default_factory=dict)
    #: what the input's radiometric scaling overrides of what it declares (msrgb.radiometry.decide), for
    #: the closing lines of a run
    overrides: frozenset[str] = frozenset()
    #: PUTs of its files to S3 still under way (Converter.defer_uploads): the image is made
    #: when they have finished without error
    uploads: list[Future[None]] = field(default_factory=list)

    def source_of(self, product: str) -> str:
        return self.product_sources.get(product, self.source_sha)


class Converter:
    """Converts input files to images for a fixed list of products, reading each file once.
    Thread-safe. Products with a dataset-wide stretch must come with their limits
    (Product.with_limits)."""

    def __init__(
        self,
        products: Sequence[Product],
        in_memory_bytes: int = IN_MEMORY_BYTES,
        max_pixels: int = MAX_PIXELS,
        defer_uploads: bool = False,
    ):
        for p in products:
            if p.png_compression not in PNG_COMPRESSION:
                raise ProductError(
                    f"product {p.name!r}: png_compression {p.png_compression!r}: choose one "
                    f"of {sorted(PNG_COMPRESSION)}"
                )
        self.products = list(products)
        self.inputs = ImageReaders(self.products, in_memory_bytes, max_pixels)
        self.reader = self.inputs.tiles
        self.renderer = Renderer(self.products)
        self._recipes = {p.name: RecipeWriter(p) for p in self.products}
        #: images to S3 are PUT in the background (Converted.uploads) instead of before
        #: convert() returns: the shard job waits for them before it records an image
        self.defer_uploads = defer_uploads

    def read(self, path: str | Path, data: bytes | None = None) -> Tile:
        """The bands the products need (see :meth:`msrgb.readers.stacked.TileReader.read`)."""
        return self.reader.read(path, data)

    def render(self, tile: Tile | dict[int, np.ndarray], product: Product) -> np.ndarray:
        """The image of ``product`` (see :meth:`msrgb.render.render.Renderer.render`)."""
        return self.renderer.render(tile if isinstance(tile, Tile) else Tile(tile), product)

    def convert(self, src: str | Path | BandImage | InputImage, dests: dict[str, Path | S3Path], rel: str | None = None) -> Converted:
        """Convert ``src`` (an input of any kind, msrgb.readers.images; a path is a file holding all
        bands) to one image per product (``dests``: product name -> path), with the products'
        side files (world file, .aux.xml). Each file is opened and read once.

        ``rel`` names the input in each image's recipe (default: the file or folder name).

        Raises :class:`InputError` for a bad input, :class:`OutputFileError` when one of its
        output files cannot be written (its name), :class:`OutputError` when the output folder
        cannot be written at all."""
        image = self.inputs.of(src)
        products = [p for p in self.products if p.name in dests]
        rel = rel or image.where.name
        try:
            reading = image.read()
        except ReadInBlocks:  # large on disk, or once decoded
            with image.open_large() as large:
                result = Converted(large.source_sha, product_sources=large.product_sources)
                assert large.large is not None
                self._convert_in_blocks(large.large, products, dests, result, rel)
            return result
        result = Converted(reading.source_sha, product_sources=reading.product_sources)
        assert reading.tile is not None
        tile, reading.tile = reading.tile, None  # one reference: freed after the conversion
        self._convert_tile(tile, products, dests, result, rel)
        return result

    def _convert_tile(
        self, tile: Tile, products: Sequence[Product], dests: dict[str, Path | S3Path], result: Converted, rel: str
    ) -> None:
        result.overrides = tile.overrides
        for product in products:
            self._note(tile, product, result, rel, tile)
            rendered = self.render(tile, product)
            result.clipping[product.name] = clip_figures(rendered, product)
            image = encode_image(rendered, product, self._recipe(tile, product, rel, result))
            self._write(dests[product.name], [image], product, tile, result)

    def _recipe(self, tile: Tile, product: Product, rel: str, result: Converted) -> str:
        """The image's recipe, with the radiometric scaling of its bands where one applied
        (also recorded in ``result`` for the provenance manifest)."""
        scalings = band_scalings(tile, product)
        if scalings is None:
            return self._recipes[product.name].text(rel)
        used = {b: s for b, s in zip(product.bands, scalings) if s is not None}
        result.radiometry[product.name] = radiometry_text(used)
        return self._recipes[product.name].text(rel, used)

    def _convert_in_blocks(
        self,
        image: LargeImage | LargeBandImage,
        products: Sequence[Product],
        dests: dict[str, Path | S3Path],
        result: Converted,
        rel: str,
    ) -> None:
        """Like :meth:`convert` for an image over ``in_memory_bytes`` (a whole scene): memory
        stays a few blocks of rows plus the compressed PNGs, whatever the image's size (a JPEG
        or WebP is encoded from the whole image at the end). The images are byte for byte those
        of the in-memory path. Logs its progress."""
        _check_blockwise(image, products)
        preview = image.preview() if image.is_float else None  # for float_range_note
        # a PNG is compressed block by block; a JPEG or WebP is encoded whole at the end, from
        # one array filled in place (no list of blocks to join: one copy less at the peak)
        streams: dict[str, PngStream | np.ndarray] = {}
        limits = {}
        clips = {p.name: ClipCounter(p) for p in products}
        whole = image.tile({})
        result.overrides = whole.overrides
        for p in products:
            self._note(preview, p, result, rel, whole)
            if p.fixed_limits() is None:
                limits[p.name] = self._image_limits(image, p)
            channels = 4 if p.has_alpha else 3
            level, strategy = PNG_COMPRESSION[p.png_compression]
            dtype = np.uint8 if p.bit_depth == 8 else np.uint16
            if p.format == "png":
                streams[p.name] = PngStream(image.rows, image.cols, channels, dtype, level, strategy)
            else:
                streams[p.name] = np.empty((image.rows, image.cols, channels), dtype)
        done, last = 0, time.monotonic()
        for block in image.blocks():
            height = next(iter(block.bands.values())).shape[0] if block.bands else 0
            for p in products:
                rendered = self.renderer.render(block, p, limits.get(p.name))
                clips[p.name].add(rendered)
                stream = streams[p.name]
                if isinstance(stream, PngStream):
                    stream.add(rendered)
                else:
                    stream[done : done + height] = rendered
            done += height
            if time.monotonic() - last >= LARGE_IMAGE_PROGRESS_SECONDS:
                last = time.monotonic()
                log.info("%s: %d of %d rows converted", image.path, done, image.rows)
        for p in products:
            result.clipping[p.name] = clips[p.name].figures()
            recipe = self._recipe(whole, p, rel, result)
            stream = streams.pop(p.name)
            if isinstance(stream, PngStream):
                pieces = stream.finish({RECIPE_KEY: recipe})
            else:
                pieces = [encode_image(stream, p, recipe)]
            self._write(dests[p.name], pieces, p, whole, result)

    def _image_limits(self, image: LargeImage | LargeBandImage, product: Product) -> list[tuple[float, float]]:
        """The per-image percentile limits of a large image, one whole band at a time."""
        exclude = None
        scalings = pixel_scalings(image.tile({}), product) or [None] * len(product.indices)
        if product.nodata is not None or image.is_float or any(scalings):  # pixels to leave out
            parts = []
            for block in image.blocks():
                bands = product_bands(block, product)
                mask = bands.excluded
                parts.append(np.zeros(bands.stack.shape[:2], bool) if mask is None else mask)
            exclude = np.concatenate(parts)
        return [
            band_percentiles(s.apply(image.band(i)) if s else image.band(i), exclude, product)
            for i, s in zip(product.indices, scalings)
        ]

    def _note(self, tile: Tile | None, product: Product, result: Converted, rel: str, scaled: Tile) -> None:
        """Warnings about the input under the product's settings: float values in 0-1 (from
        ``tile``, the bands or a preview of them), a name of baseline 04.00+ data without an
        offset (from ``scaled``, which has the image's radiometric scaling)."""
        notes = [float_range_note(tile, product) if tile is not None else None]
        if band_scalings(scaled, product) is None and looks_like_offset_data(rel):
            notes.append(MISSING_OFFSET_NOTE)
        for note in notes:
            if note is not None and note not in result.notes:
                result.notes.append(note)

    def _write(
        self, path: Path | S3Path, image: list[bytes], product: Product, tile: Tile, result: Converted
    ) -> None:
        """Write the image (in pieces) and the product's side files; record its SHA-256."""
        sha = hashlib.sha256()
        for piece in image:
            sha.update(piece)
        result.image_sha[product.name] = sha.hexdigest()
        files: list[tuple[Path | S3Path, bytes | list[bytes]]] = [(path, image)]
        if product.world_file:
            assert tile.transform is not None and tile.crs_wkt is not None
            files.append((world_file_path(path), world_file_text(tile.transform).encode()))
            files.append((aux_xml_path(path), aux_xml_text(tile.transform, tile.crs_wkt).encode()))
        for where, data in files:
            if self.defer_uploads and isinstance(where, S3Path):
                result.uploads.append(put_later(where, data))
            else:
                write_output(where, data)


def _check_blockwise(image: LargeImage | LargeBandImage, products: Sequence[Product]) -> None:
    """Fail for a product that cannot be made from an image read in blocks."""
    for p in products:
        if p.stretch == "clahe" or (p.stretch == "equalize" and not p.dataset_stretch):
            raise InputError(
                f"{image.path}: product {p.name!r}: a {p.stretch!r} stretch of one image needs "
                "the whole image in memory, and this one is read in blocks; set max_size (a "
                "quicklook) or, for equalize, scope: dataset"
            )

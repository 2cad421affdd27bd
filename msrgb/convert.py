"""Converting one input file into the images of every product: read once (msrgb.reader), render
(msrgb.render), encode (msrgb.pngenc) and write atomically with side files (msrgb.files,
msrgb.georef)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from msrgb.errors import InputError, OutputError, OutputFileError
from msrgb.files import aux_xml_path, world_file_path, write_atomic, write_output
from msrgb.georef import aux_xml_text, world_file_text
from msrgb.pngenc import PNG_COMPRESSION, encode_png
from msrgb.products import Product
from msrgb.reader import (
    IN_MEMORY_BYTES,
    Tile,
    TileReader,
    enter_thread_gdal_env,
    gdal_env,
)
from msrgb.render import Renderer, float_range_note

__all__ = [
    "PNG_COMPRESSION",
    "Converted",
    "Converter",
    "InputError",
    "OutputError",
    "OutputFileError",
    "Tile",
    "encode_png",
    "enter_thread_gdal_env",
    "gdal_env",
    "write_atomic",
]


@dataclass
class Converted:
    """What :meth:`Converter.convert` made of one input."""

    source_sha: str
    #: product name -> SHA-256 of the image written
    image_sha: dict[str, str] = field(default_factory=dict)
    #: warnings about the input's values under a product's settings (float_range_note)
    notes: list[str] = field(default_factory=list)


class Converter:
    """Converts input files to images for a fixed list of products, reading each file once.
    Thread-safe. Products with a dataset-wide stretch must come with their limits
    (Product.with_limits)."""

    def __init__(self, products: Sequence[Product], in_memory_bytes: int = IN_MEMORY_BYTES):
        for p in products:
            if p.png_compression not in PNG_COMPRESSION:
                raise ValueError(
                    f"product {p.name!r}: png_compression {p.png_compression!r}: choose one "
                    f"of {sorted(PNG_COMPRESSION)}"
                )
        self.products = list(products)
        self.reader = TileReader(self.products, in_memory_bytes)
        self.renderer = Renderer(self.products)

    def read(self, path: str | Path, data: bytes | None = None) -> Tile:
        """The bands the products need (see :meth:`msrgb.reader.TileReader.read`)."""
        return self.reader.read(path, data)

    def render(self, tile: Tile | dict[int, np.ndarray], product: Product) -> np.ndarray:
        """The image of ``product`` (see :meth:`msrgb.render.Renderer.render`)."""
        return self.renderer.render(tile if isinstance(tile, Tile) else Tile(tile), product)

    def encode(self, image: np.ndarray, png_compression: str = "huffman") -> bytes:
        """PNG bytes of an (rows, cols, 3 or 4) uint8 or uint16 image."""
        level, strategy = PNG_COMPRESSION[png_compression]
        return encode_png(image, level, strategy)

    def convert(self, src: str | Path, dests: dict[str, Path]) -> Converted:
        """Convert ``src`` to one image per product (``dests``: product name -> path), with the
        products' side files (world file, .aux.xml). The file is opened and read once: its bytes
        are hashed and, up to ``in_memory_bytes``, parsed by GDAL from memory.

        Raises :class:`InputError` for a bad input, :class:`OutputFileError` when one of its
        output files cannot be written (its name), :class:`OutputError` when the output folder
        cannot be written at all."""
        data, source_sha = self.reader.load(src)
        tile = self.reader.read(src, data)
        del data
        result = Converted(source_sha)
        for product in self.products:
            path = dests.get(product.name)
            if path is None:
                continue
            note = float_range_note(tile, product)
            if note is not None:
                result.notes.append(note)
            image = self.encode(self.render(tile, product), product.png_compression)
            result.image_sha[product.name] = hashlib.sha256(image).hexdigest()
            files = {path: image}
            if product.world_file:
                assert tile.transform is not None and tile.crs_wkt is not None
                files[world_file_path(path)] = world_file_text(tile.transform).encode()
                files[aux_xml_path(path)] = aux_xml_text(tile.transform, tile.crs_wkt).encode()
            for target, content in files.items():
                write_output(target, content)
        return result

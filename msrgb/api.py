"""A small Python API for notebooks: the same conversion the workflow runs, on one array or one
file, with the same settings (product presets or specifications, stretches, PNG encoding).

>>> from msrgb import api
>>> rgb = api.convert_file("EuroSAT/AnnualCrop/AnnualCrop_1.tif")          # (64, 64, 3) uint8
>>> rgb = api.convert_file("in.tif", "out.png", product="falsecolor")      # also writes the PNG
>>> rgb = api.to_rgb(ms)          # ms: (rows, cols, 13) array in EuroSAT band order
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from msrgb.config.parse import parse_products
from msrgb.config.products import Product
from msrgb.errors import ProductError
from msrgb.jobs.convert import Converter
from msrgb.readers.gdal import gdal_env
from msrgb.render.encoding import encode_image
from msrgb.render.recipe import recipe_text
from msrgb.storage.files import write_atomic
from msrgb.tile import Tile

ProductSpec = str | Mapping[str, Any] | Product


def product_of(
    spec: ProductSpec = "truecolor",
    png_compression: str = "huffman",
    limits: Sequence[Sequence[float]] | None = None,
) -> Product:
    """A product from a preset name, a specification (the same keys as in the config's
    ``products`` mapping) or a Product. A dataset-wide percentile stretch needs ``limits``
    (per band (min, max), as recorded in ``{output_dir}/stretch/<product>.json``)."""
    if isinstance(spec, Product):
        product = spec
    elif isinstance(spec, str):
        (product,) = parse_products([spec], png_compression=png_compression)
    else:
        (product,) = parse_products({"product": spec}, png_compression=png_compression)
    if limits is not None:
        product = product.with_limits(limits)
    if product.dataset_stretch and product.limits is None:
        raise ProductError(
            "a dataset-wide percentile stretch needs limits=...: read them from the "
            "workflow's stretch/<product>.json ('limits')"
        )
    return product


def to_rgb(
    ms: np.ndarray,
    product: ProductSpec = "truecolor",
    nodata: float | None = None,
    limits: Sequence[Sequence[float]] | None = None,
) -> np.ndarray:
    """The product's image of ``ms``, a (rows, cols, bands) array in the band map's order
    (EuroSAT: B01 ... B12, B8A). For the default product this is exactly
    ``(255 * (ms[..., (3, 2, 1)] / 4000).clip(0, 1)).astype(uint8)``."""
    p = product_of(product, limits=limits)
    if ms.ndim != 3 or ms.shape[-1] != len(p.band_map):
        raise ProductError(
            f"expected a (rows, cols, {len(p.band_map)}) array (bands last, "
            f"{' '.join(p.band_map)}), got shape {ms.shape}"
        )
    bands = {i: ms[..., i] for i in p.indices}
    return Converter([p]).render(Tile(bands, nodata), p)


def read_tile(path: str | Path) -> np.ndarray:
    """All bands of a GeoTIFF as a (rows, cols, bands) array."""
    import rasterio

    with gdal_env(), rasterio.open(path) as src:
        return np.moveaxis(src.read(), 0, -1)


def png_bytes(image: np.ndarray, png_compression: str = "huffman", recipe: str | None = None) -> bytes:
    """PNG bytes of an image from :func:`to_rgb`, encoded as the workflow encodes it; the
    workflow's files also carry their ``recipe`` (msrgb.render.recipe.recipe_text)."""
    return encode_image(image, product_of("truecolor", png_compression), recipe)


def convert_file(
    tif: str | Path,
    png: str | Path | None = None,
    product: ProductSpec = "truecolor",
    png_compression: str = "huffman",
    limits: Sequence[Sequence[float]] | None = None,
    rel: str | None = None,
) -> np.ndarray:
    """Convert one GeoTIFF like the workflow does; returns the image and, if ``png`` is given,
    writes it there (atomically, in the product's format), byte for byte what the workflow
    writes for an input at ``rel`` under its input folder (default: the file's name), which
    the image's recipe names."""
    p = product_of(product, png_compression, limits)
    converter = Converter([p])
    with gdal_env():
        tile = converter.read(tif)
    image = converter.render(tile, p)
    if png is not None:
        data = encode_image(image, p, recipe_text(p, rel or Path(tif).name))
        write_atomic(Path(png), data)
    return image


def run(config: Mapping[str, Any] | None = None, cores: int = 1, configfile: str | Path | None = None) -> Any:
    """A whole run of the workflow in this process, without Snakemake: the same settings as
    ``--config`` (``config``, on top of ``configfile`` or the workflow's config/config.yaml),
    the same planning, jobs, files and reruns. Returns what ran
    (:class:`msrgb.engine.run.RunResult`: ``shards``, ``parts``, ``summary``); raises
    :class:`msrgb.errors.MsrgbError` naming what is wrong.

    >>> api.run({"input_dir": "EuroSAT/tif", "output_dir": "out"}, cores=4)
    """
    from msrgb.engine.run import run as run_workflow

    return run_workflow(config, cores=cores, configfile=Path(configfile) if configfile else None)

"""Dataset-wide percentile stretches: the limits are computed once, from a fixed sample of the
inputs, and recorded in a JSON file that every shard job reads. The sample is the ``sample``
files with the smallest path hashes, so it does not depend on the machine or on the order of
discovery, and it changes only when a file entering or leaving the dataset belongs to it."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from msrgb.config.products import Product
from msrgb.errors import InputError
from msrgb.planning.samples import read_sample
from msrgb.sources.discovery import Source
from msrgb.storage.files import write_atomic
from msrgb.version import __version__

if TYPE_CHECKING:  # the computing functions load GDAL and numpy; planning reads samples only
    from msrgb.readers.images import InputImage
    from msrgb.sources.stac import InputDir
    from msrgb.tile import Tile

log = logging.getLogger("msrgb")


#: quantiles recorded per band for a dataset-wide equalization
EQUALIZE_QUANTILES = 1025


def whole_bands(image: InputImage) -> Tile:
    """The needed bands of an input, whole, also of an image otherwise read in blocks."""
    from msrgb.errors import ReadInBlocks

    try:
        tile = image.read().tile
    except ReadInBlocks:
        with image.open_large() as reading:
            large = reading.large
            assert large is not None
            return large.tile({i: large.band(i) for i in large.reader.needed})
    assert tile is not None
    return tile


def compute_limits(product: Product, input_dir: InputDir, sample: Sequence[Source]) -> dict:
    """Per-band percentiles of the product's bands over all valid pixels of the sample files.
    Bad files are left out (and listed); returns what :func:`write_limits` records."""
    import numpy as np

    from msrgb.readers.gdal import gdal_env
    from msrgb.readers.images import ImageReaders
    from msrgb.render.render import product_bands

    # the same bands and nodata, with a stretch whose limits are known, only to read the files
    base = replace(product, stretch="gain")
    inputs = ImageReaders([base])
    values: list[list[np.ndarray]] = [[], [], []]
    skipped = []
    with gdal_env():
        for src in sample:
            try:
                tile = whole_bands(inputs.open(input_dir, src))
            except InputError as exc:
                log.warning("%s", exc)
                skipped.append(src.rel)
                continue
            bands = product_bands(tile, base)
            exclude = bands.excluded
            for c in range(3):
                band = bands.stack[..., c]
                values[c].append(band.ravel() if exclude is None else band[~exclude])
    if all(not v for v in values):
        raise InputError(f"product {product.name!r}: no readable file in the stretch sample")
    limits = []
    for c in range(3):
        if product.stretch == "equalize":  # the sample's distribution, as its quantiles
            q = np.percentile(np.concatenate(values[c]), np.linspace(0, 100, EQUALIZE_QUANTILES))
            limits.append([float(v) for v in np.maximum.accumulate(q)])
            continue
        lo, hi = np.percentile(np.concatenate(values[c]), [product.low, product.high])
        limits.append([float(lo), float(hi) if hi > lo else float(lo) + 1.0])
    return {
        "product": product.name,
        "bands": list(product.bands),
        "low_percentile": product.low,
        "high_percentile": product.high,
        "limits": limits,
        "sample_files": len(sample) - len(skipped),
        "skipped_files": skipped,
        "msrgb_version": __version__,
    }


def write_limits(path: Path, record: dict) -> None:
    write_atomic(path, (json.dumps(record, indent=2) + "\n").encode())


def run(product: Product, input_dir: InputDir, sample: Path, out: Path) -> dict:
    """Compute and record the limits of ``product`` from the files listed in ``sample``."""
    record = compute_limits(product, input_dir, read_sample(sample))
    write_limits(out, record)
    log.info("product %s: limits %s from %d files", product.name, record["limits"], record["sample_files"])
    return record

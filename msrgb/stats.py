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

import numpy as np

from msrgb import __version__
from msrgb.errors import InputError
from msrgb.files import write_atomic, write_if_changed
from msrgb.plan import Source, path_hash
from msrgb.reader import TileReader, gdal_env
from msrgb.render import product_bands
from msrgb.products import Product

log = logging.getLogger("msrgb")


def choose_sample(sources: Sequence[Source], size: int) -> list[str]:
    """Relative paths of the sample: the ``size`` files with the smallest path hashes."""
    return sorted(s.rel for s in sorted(sources, key=lambda s: path_hash(s.rel))[:size])


def sample_text(product: Product, rels: Sequence[str]) -> str:
    """The sample list: JSON, so that any file name fits."""
    record = {"product": product.name, "digest": product.digest(), "files": list(rels)}
    return json.dumps(record, indent=0, ensure_ascii=False) + "\n"


def write_sample(path: Path, product: Product, sources: Sequence[Source]) -> bool:
    """Write the sample list of ``product`` (only if it changed; True if written)."""
    return write_if_changed(path, sample_text(product, choose_sample(sources, product.sample)))


def compute_limits(product: Product, input_dir: Path, rels: Sequence[str]) -> dict:
    """Per-band percentiles of the product's bands over all valid pixels of the sample files.
    Bad files are left out (and listed); returns what :func:`write_limits` records."""
    # the same bands and nodata, with a stretch whose limits are known, only to read the files
    base = replace(product, stretch="gain")
    reader = TileReader([base])
    values: list[list[np.ndarray]] = [[], [], []]
    skipped = []
    with gdal_env():
        for rel in rels:
            try:
                tile = reader.read(input_dir / rel)
            except InputError as exc:
                log.warning("%s", exc)
                skipped.append(rel)
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
        lo, hi = np.percentile(np.concatenate(values[c]), [product.low, product.high])
        limits.append([float(lo), float(hi) if hi > lo else float(lo) + 1.0])
    return {
        "product": product.name,
        "bands": list(product.bands),
        "low_percentile": product.low,
        "high_percentile": product.high,
        "limits": limits,
        "sample_files": len(rels) - len(skipped),
        "skipped_files": skipped,
        "msrgb_version": __version__,
    }


def write_limits(path: Path, record: dict) -> None:
    write_atomic(path, (json.dumps(record, indent=2) + "\n").encode())


def read_limits(path: Path) -> list[list[float]]:
    return json.loads(path.read_text())["limits"]


def run(product: Product, input_dir: Path, sample: Path, out: Path) -> dict:
    """Compute and record the limits of ``product`` from the files listed in ``sample``."""
    rels = json.loads(sample.read_text(encoding="utf-8"))["files"]
    record = compute_limits(product, input_dir, rels)
    write_limits(out, record)
    log.info("product %s: limits %s from %d files", product.name, record["limits"], record["sample_files"])
    return record

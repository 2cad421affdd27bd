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
from msrgb.convert import Converter, InputError, gdal_env, product_bands, write_atomic
from msrgb.plan import Source, path_hash, write_if_changed
from msrgb.products import Product

log = logging.getLogger("msrgb")


def choose_sample(sources: Sequence[Source], size: int) -> list[str]:
    """Relative paths of the sample: the ``size`` files with the smallest path hashes."""
    return sorted(s.rel for s in sorted(sources, key=lambda s: path_hash(s.rel))[:size])


def sample_text(product: Product, rels: Sequence[str]) -> str:
    return "\n".join([f"# sample of product {product.name} {product.digest()}", *rels]) + "\n"


def write_sample(path: Path, product: Product, sources: Sequence[Source]) -> bool:
    """Write the sample list of ``product`` (only if it changed; True if written)."""
    return write_if_changed(path, sample_text(product, choose_sample(sources, product.sample)))


def compute_limits(product: Product, input_dir: Path, rels: Sequence[str]) -> dict:
    """Per-band percentiles of the product's bands over all valid pixels of the sample files.
    Bad files are left out (and listed); returns what :func:`write_limits` records."""
    # the same bands and nodata, with a stretch whose limits are known, only to read the files
    base = replace(product, stretch="gain")
    converter = Converter([base])
    values: list[list[np.ndarray]] = [[], [], []]
    skipped = []
    with gdal_env():
        for rel in rels:
            try:
                tile = converter.read(input_dir / rel)
            except InputError as exc:
                log.warning("%s", exc)
                skipped.append(rel)
                continue
            stack, invalid = product_bands(tile, base)
            for c in range(3):
                band = stack[..., c]
                values[c].append(band.ravel() if invalid is None else band[~invalid])
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
    rels = [line for line in sample.read_text().splitlines() if line and not line.startswith("#")]
    record = compute_limits(product, input_dir, rels)
    write_limits(out, record)
    log.info("product %s: limits %s from %d files", product.name, record["limits"], record["sample_files"])
    return record

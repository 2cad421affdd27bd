"""The sample a dataset-wide stretch is computed from (chosen by path hash, the same on every
machine), and the limits a finished stretch recorded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from msrgb.config.products import Product
from msrgb.sources.discovery import Source
from msrgb.sources.hashing import hash_sample

if TYPE_CHECKING:  # the computing functions load GDAL and numpy; planning reads samples only
    pass


def choose_sample(sources: Sequence[Source], size: int) -> list[Source]:
    """The sample: the ``size`` images with the smallest path hashes, sorted by path."""
    return hash_sample(sources, size)


def sample_text(product: Product, sample: Sequence[Source]) -> str:
    """The sample list: JSON, so that any file name fits; images made of band files with
    their files."""
    record: dict = {"product": product.name, "digest": product.digest(), "files": [s.rel for s in sample]}
    bands = {s.rel: [list(pair) for pair in s.files] for s in sample if s.files is not None}
    if bands:
        record["band_files"] = bands
    return json.dumps(record, indent=0, ensure_ascii=False) + "\n"


def read_sample(path: Path) -> list[Source]:
    record = json.loads(path.read_text(encoding="utf-8"))
    bands = record.get("band_files", {})
    return [
        Source(rel, 0, 0, tuple(tuple(pair) for pair in bands[rel]) if rel in bands else None)  # type: ignore[misc]
        for rel in record["files"]
    ]


def read_limits(path: Path) -> list[list[float]]:
    return json.loads(path.read_text())["limits"]


def with_recorded_limits(product: Product, path: Path) -> Product:
    """``product`` with the dataset-wide limits recorded at ``path``; as it is when it has no
    dataset-wide stretch or they are not computed yet, the file missing or damaged (its
    digest then matches no record: every image counts as to convert, or stale). The next run
    computes the limits again."""
    if not product.dataset_stretch:
        return product
    try:
        return product.with_limits(read_limits(path))
    except (FileNotFoundError, ValueError, KeyError):
        return product

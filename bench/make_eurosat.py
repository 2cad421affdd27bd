#!/usr/bin/env python3
"""Write a EuroSAT-shaped dataset of any size for benchmarks.

Same shape as the real EuroSAT multispectral files: 10 class folders, ``<Class>/<Class>_<i>.tif``,
64x64 pixels, 13 bands, uint16, uncompressed, pixel-interleaved, strips of 4 rows, UTM CRS and
107,244 bytes per file. Each class has its own spectrum and texture (``msrgb.synth``).
A pool of distinct tiles per class is rendered once with rasterio and the remaining files are
written by swapping the pixel bytes of that class's template, so 270,000 files take minutes,
not an hour.

Usage: make_eurosat.py OUTPUT_DIR N [--start K] [--pool P]
  N       total number of files, spread evenly over the 10 classes
  --start first index of each class (to add files to an existing dataset)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from msrgb import synth  # noqa: E402

EUROSAT_FILE_SIZE = 107_244


def template(class_name: str, workdir: Path) -> tuple[bytes, int, int]:
    """Return (file bytes, pixel data offset, pixel data length) of one rendered tile, padded
    with a GDAL metadata item to the size of a real EuroSAT file."""
    data = synth.make_tile(class_name, 0)
    path = workdir / f"{class_name}.tif"
    synth.write_tile(path, data, synth.tile_origin(class_name, 0), 32632)
    pad = 1
    for _ in range(4):  # the padding tag has a fixed overhead: converge in a step or two
        synth.write_tile(path, data, synth.tile_origin(class_name, 0), 32632, pad="x" * pad)
        pad += EUROSAT_FILE_SIZE - path.stat().st_size
        if path.stat().st_size == EUROSAT_FILE_SIZE or pad < 1:
            break
    raw = path.read_bytes()
    pixels = np.moveaxis(data, 0, -1).tobytes()  # pixel-interleaved, strips written in order
    offset = raw.find(pixels)
    if offset < 0:
        raise RuntimeError("template pixels are not contiguous; cannot splice")
    return raw, offset, len(pixels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output_dir", type=Path)
    ap.add_argument("n", type=int)
    ap.add_argument("--start", type=int, default=1)
    ap.add_argument("--pool", type=int, default=64, help="distinct tiles rendered per class")
    args = ap.parse_args()
    classes = tuple(synth.CLASS_SPECTRA)
    per_class, extra = divmod(args.n, len(classes))
    with tempfile.TemporaryDirectory() as tmp:
        for c, class_name in enumerate(classes):
            raw, off, length = template(class_name, Path(tmp))
            pool = [
                np.moveaxis(synth.make_tile(class_name, k), 0, -1).tobytes()
                for k in range(1, args.pool + 1)
            ]
            folder = args.output_dir / class_name
            folder.mkdir(parents=True, exist_ok=True)
            count = per_class + (1 if c < extra else 0)
            for i in range(args.start, args.start + count):
                body = pool[(i * 7919) % len(pool)]
                (folder / f"{class_name}_{i}.tif").write_bytes(
                    raw[:off] + body + raw[off + length :]
                )
    print(f"wrote {args.n} files under {args.output_dir}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write a BigEarthNet-S2-shaped dataset of any size for benchmarks.

Same shape as BigEarthNet-S2: a folder per patch, ``<patch>/<patch>_<band>.tif`` for the 12
bands B01-B12 and B8A (no B10), uint16, uncompressed, georeferenced, 120x120 px for the 10 m
bands, 60x60 for the 20 m bands and 20x20 for the 60 m bands (``msrgb.synth.make_patch``). A
pool of distinct patches is rendered once and the other files are written by swapping the
pixel bytes of a template file per band, so 59,000 patches (708,000 files) take minutes.

Usage: make_bigearthnet.py OUTPUT_DIR N [--start K] [--pool P]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from msrgb import synth  # noqa: E402


def template(band: str, workdir: Path) -> tuple[bytes, int, int]:
    """(file bytes, pixel offset, pixel length) of one band file written by rasterio."""
    data = synth.make_patch(0)[band]
    path = workdir / f"{band}.tif"
    synth.write_band(path, data, (300000.0, 5000000.0), 32632)
    raw = path.read_bytes()
    offset = raw.find(data.tobytes())
    if offset < 0:
        raise RuntimeError("template pixels are not contiguous; cannot splice")
    return raw, offset, data.nbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output_dir", type=Path)
    ap.add_argument("n", type=int)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--pool", type=int, default=64, help="distinct patches rendered")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        templates = {band: template(band, Path(tmp)) for band in synth.BIGEARTHNET_BANDS}
    pool = [synth.make_patch(k) for k in range(1, args.pool + 1)]
    for i in range(args.start, args.start + args.n):
        name = synth.patch_name(i)
        folder = args.output_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        bands = pool[(i * 7919) % len(pool)]
        for band, (raw, off, length) in templates.items():
            body = bands[band].tobytes()
            (folder / f"{name}_{band}.tif").write_bytes(raw[:off] + body + raw[off + length :])
    print(f"wrote {args.n} patches ({12 * args.n} files) under {args.output_dir}")


if __name__ == "__main__":
    main()

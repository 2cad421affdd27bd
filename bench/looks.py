#!/usr/bin/env python3
"""What the looks cost: per image and product, single thread, and whole workflow runs.

1. convert() of EuroSAT tiles for one product at a time (best of --repeat passes over --n
   tiles, page cache warm): truecolor, ndvi (colour map), truecolor as JPEG and as WebP,
   truecolor_optimized, truecolor_equalized, truecolor_clahe; and the JPEG/WebP encoder through
   imageio against Pillow directly (the reason msrgb.render.recipe calls Pillow).
2. With --workflow: real `snakemake --cores 2` full runs over --data (27,000 tiles), one product
   each, one after the other in the same session: truecolor, ndvi, jpeg.

Usage: bench/looks.py --data DIR [--n 2000] [--repeat 3] [--workflow] [--work DIR]
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from run import snakemake_command, timed  # noqa: E402

from msrgb.config.parse import parse_products
from msrgb.jobs.convert import Converter  # noqa: E402
from msrgb.readers.gdal import enter_thread_gdal_env
from msrgb.sources.discovery import discover  # noqa: E402

PRODUCTS = {
    "truecolor": None,
    "ndvi": None,
    "jpeg": {"preset": "truecolor", "format": "jpeg", "quality": 90},
    "webp": {"preset": "truecolor", "format": "webp", "quality": 90},
    "truecolor_optimized": None,
    "truecolor_equalized": None,
    "truecolor_clahe": None,
}


def per_image(data: Path, n: int, repeat: int) -> None:
    enter_thread_gdal_env()
    tiles = [data / s.rel for s in discover(data)[:n]]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in PRODUCTS.items():
            (product,) = parse_products({name: spec})
            converter = Converter([product])
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                for i, tif in enumerate(tiles):
                    converter.convert(tif, {name: Path(tmp) / f"{i % 500}{product.suffix}"})
                best = min(best, time.perf_counter() - t0)
            results[name] = 1000 * best / len(tiles)
    base = results["truecolor"]
    print(f"convert() per tile, single thread, best of {repeat} over {len(tiles)} tiles:")
    for name, ms in results.items():
        print(f"  {name:22s} {ms:6.3f} ms  {ms / base:5.2f}x truecolor")
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    import imageio.v3 as iio
    from PIL import Image

    for fmt, ext in (("JPEG", ".jpg"), ("WEBP", ".webp")):
        t0 = time.perf_counter()
        for _ in range(1000):
            iio.imwrite("<bytes>", image, extension=ext, quality=90)
        via_imageio = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(1000):
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format=fmt, quality=90)
        direct = time.perf_counter() - t0
        print(f"  {fmt} of a 64x64 tile: imageio {via_imageio:.3f} ms, Pillow directly {direct:.3f} ms")


def workflow(data: Path, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    walls = {}
    for name in ("truecolor", "ndvi", "jpeg"):
        out = work / f"out-{name}"
        if out.exists():
            shutil.rmtree(out)
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**config, "products": {name: PRODUCTS[name]}}))
        smk = snakemake_command(f"input_dir={data}", f"output_dir={out}", configfile=path)
        walls[name], peak = timed(smk, work, work / f"{name}.log")
        print(f"workflow {name}: {walls[name]:.1f} s ({walls[name] / walls['truecolor']:.2f}x truecolor), peak {peak} MB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workflow", action="store_true")
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "looks")
    args = ap.parse_args()
    per_image(args.data, args.n, args.repeat)
    if args.workflow:
        workflow(args.data.resolve(), args.work.resolve())


if __name__ == "__main__":
    main()

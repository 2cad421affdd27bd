#!/usr/bin/env python3
"""Peak memory of runs over an image that is tiny on disk and huge in pixels.

Writes a 20,000 x 20,000 x 13 uint16 deflate GeoTIFF whose blocks are never written (a few MB
on disk, 10.4 GB of pixels decoded), then runs the workflow on it: with the defaults (refused
by max_pixels, quickly), as a quicklook (max_size), and at full size with max_pixels raised.
For each run: wall time and the peak resident memory of the largest process (the Snakemake
main process or a job), from getrusage of the finished children.

Usage: bench/huge.py [--size 20000] [--out bench/out/huge]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import rasterio
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parent.parent


def sparse_tif(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff", width=size, height=size, count=13, dtype="uint16", compress="deflate",
        tiled=True, blockxsize=512, blockysize=512, crs="EPSG:32632", transform=from_origin(0, 0, 10, 10),
    )  # fmt: skip
    with rasterio.open(path, "w", **profile):
        pass


def run(label: str, inp: Path, out: Path, **config: str) -> None:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", "-q",
        "--config", f"input_dir={inp}", f"output_dir={out}", "progress=false", "on_error=skip",
        *(f"{k}={v}" for k, v in config.items()),
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    # the largest resident set of any process waited for so far (runs go from small to large)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    errors = (out / "errors.tsv").read_text().splitlines()[1:] if (out / "errors.tsv").exists() else []
    what = errors[0].split("\t", 1)[1][:70] if errors else "converted"
    print(f"{label:<36} exit {proc.returncode}  {seconds:6.1f} s  peak {peak_mb:7.0f} MB  {what}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "huge")
    args = ap.parse_args()
    inp = args.out / "in"
    sparse_tif(inp / "huge.tif", args.size)
    size_mb = (inp / "huge.tif").stat().st_size / 2**20
    print(f"{args.size} x {args.size} x 13 uint16 deflate: {size_mb:.1f} MB on disk")
    run("defaults (max_pixels refuses it)", inp, args.out / "refused")
    run("quicklook (max_size=1024)", inp, args.out / "quick", max_size="1024")
    run("full size (max_pixels=500000000)", inp, args.out / "full", max_pixels="500000000")


if __name__ == "__main__":
    main()

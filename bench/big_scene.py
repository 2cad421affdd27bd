#!/usr/bin/env python3
"""Peak memory and time of converting one large stacked scene (13 bands, uint16, like a
Sentinel-2 tile stacked into one GeoTIFF) with the workflow, per size.

For each size a scene is written once (uncompressed, strips; a smooth synthetic surface with
noise, so the PNG is not trivially small), then ``snakemake --cores 2`` converts it to the
truecolor PNG, with an empty output folder. The peak resident memory reported is that of the
largest process of the run (getrusage of the waited-for children: the shard job), in MB.

Usage: big_scene.py [--sizes 6000 10980] [--data /tmp/msrgb-big] [--repo DIR]
  --repo  the checkout whose Snakefile runs (default: this one), to compare two versions
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

REPO = Path(__file__).resolve().parent.parent


def write_scene(path: Path, size: int, bands: int = 13) -> None:
    """A size x size x 13 uint16 GeoTIFF, written 512 rows at a time."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff", "dtype": "uint16", "count": bands, "width": size, "height": size,
        "crs": "EPSG:32629", "transform": from_origin(300000, 3300000, 10, 10),
        "interleave": "pixel", "blockysize": 16, "compress": "none", "BIGTIFF": "YES",
    }  # fmt: skip
    rng = np.random.default_rng(0)
    x = np.linspace(0, 6 * np.pi, size, dtype=np.float32)
    tmp = path.with_suffix(".part")
    with rasterio.open(tmp, "w", **profile) as dst:
        for row in range(0, size, 512):
            h = min(512, size - row)
            y = np.linspace(row, row + h, h, dtype=np.float32)[:, None] / size * 6 * np.pi
            surface = 1500 + 1000 * np.sin(x[None, :] + y) * np.cos(y / 2)
            block = np.empty((bands, h, size), dtype=np.uint16)
            for b in range(bands):
                noise = rng.integers(0, 400, size=(h, size), dtype=np.uint16)
                block[b] = (surface * (0.6 + 0.05 * b)).astype(np.uint16) + noise
            dst.write(block, window=Window(0, row, size, h))
    tmp.rename(path)


def convert(repo: Path, input_dir: Path, output_dir: Path) -> tuple[float, float]:
    """(seconds, peak MB of the largest process) of one workflow run."""
    shutil.rmtree(output_dir, ignore_errors=True)
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--cores", "2",
        "--configfile", str(repo / "config" / "config.yaml"),
        "--config", f"input_dir={input_dir}", f"output_dir={output_dir}", "contact_sheets=False",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=output_dir.parent, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"run failed:\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        print("  (peak not above an earlier run's: read it as at most the earlier figure)")
    return seconds, peak / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[6000, 10980])
    ap.add_argument("--data", type=Path, default=Path("/tmp/msrgb-big"))
    ap.add_argument("--repo", type=Path, default=REPO)
    args = ap.parse_args()
    print("size px | file GB | seconds | peak MB (largest process)")
    for size in sorted(args.sizes):  # smallest first: getrusage keeps the maximum so far
        scene = args.data / f"in{size}" / "scene.tif"
        write_scene(scene, size)
        seconds, peak = convert(args.repo.resolve(), scene.parent, args.data / f"out{size}")
        gb = scene.stat().st_size / 1e9
        print(f"{size} | {gb:.2f} | {seconds:.1f} | {peak:.0f}", flush=True)


if __name__ == "__main__":
    main()

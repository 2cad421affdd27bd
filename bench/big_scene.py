#!/usr/bin/env python3
"""Peak memory and time of converting one large scene with the workflow, per size: a stacked
scene (13 bands, uint16, like a Sentinel-2 tile stacked into one GeoTIFF), or with
``--layout band_folders`` a folder of per-band files like a Sentinel-2 product (B02, B03, B04,
B08 at full size, B05-B07, B8A, B11, B12 at half, B01, B09 at a sixth; tiled, with overviews
like COGs), converted to truecolor and swir (20 m bands resampled), and then once more with
``max_size=256`` (a quicklook from the overviews).

For each size a scene is written once (uncompressed, strips; a smooth synthetic surface with
noise, so the PNG is not trivially small), then ``snakemake --cores 2`` converts it to the
truecolor PNG, with an empty output folder. The peak resident memory reported is that of the
largest process of the run (getrusage of the waited-for children: the shard job), in MB.

Usage: big_scene.py [--sizes 6000 10980] [--data /tmp/msrgb-big] [--repo DIR]
                    [--layout stacked|band_folders]
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
from rasterio.enums import Resampling
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


def write_band_folder(folder: Path, size: int) -> None:
    """Per-band files of a size x size scene (see the module docstring)."""
    if (folder / "B12.tif").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    bands = {"B02": 1, "B03": 1, "B04": 1, "B08": 1, "B05": 2, "B06": 2, "B07": 2, "B8A": 2,
             "B11": 2, "B12": 2, "B01": 6, "B09": 6}  # fmt: skip
    for b, (band, factor) in enumerate(bands.items()):
        n = size // factor
        profile = {
            "driver": "GTiff", "dtype": "uint16", "count": 1, "width": n, "height": n,
            "crs": "EPSG:32629", "transform": from_origin(300000, 3300000, 10 * factor, 10 * factor),
            "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "none", "BIGTIFF": "YES",
        }  # fmt: skip
        x = np.linspace(0, 6 * np.pi, n, dtype=np.float32)
        with rasterio.open(folder / f"{band}.part.tif", "w", **profile) as dst:
            for row in range(0, n, 512):
                h = min(512, n - row)
                y = np.linspace(row, row + h, h, dtype=np.float32)[:, None] / n * 6 * np.pi
                surface = (1500 + 1000 * np.sin(x[None, :] + y) * np.cos(y / 2)) * (0.6 + 0.05 * b)
                noise = rng.integers(0, 400, size=(h, n), dtype=np.uint16)
                dst.write(surface.astype(np.uint16) + noise, 1, window=Window(0, row, n, h))
            dst.build_overviews([f for f in (2, 4, 8, 16, 32) if n // f >= 64], Resampling.average)
        (folder / f"{band}.part.tif").rename(folder / f"{band}.tif")


def convert(repo: Path, input_dir: Path, output_dir: Path, *config: str) -> tuple[float, float]:
    """(seconds, peak MB of the largest process) of one workflow run."""
    shutil.rmtree(output_dir, ignore_errors=True)
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--cores", "2",
        "--configfile", str(repo / "config" / "config.yaml"),
        "--config", f"input_dir={input_dir}", f"output_dir={output_dir}", "contact_sheets=False",
        *config,
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
    ap.add_argument("--layout", choices=["stacked", "band_folders"], default="stacked")
    args = ap.parse_args()
    print("size px | run | input GB | seconds | peak MB (largest process)")
    for size in sorted(args.sizes):  # smallest first: getrusage keeps the maximum so far
        if args.layout == "stacked":
            scene = args.data / f"in{size}" / "scene.tif"
            write_scene(scene, size)
            runs = {"truecolor": ()}
        else:
            scene = args.data / f"bands{size}" / f"S2_{size}" / "B04.tif"
            write_band_folder(scene.parent, size)
            bands = ("layout=band_folders", 'products=["truecolor","swir"]')
            # the quicklook first: getrusage reports the largest process so far
            runs = {"max_size=256": (*bands, "max_size=256"), "truecolor+swir": bands}
        gb = sum(f.stat().st_size for f in scene.parent.iterdir()) / 1e9
        for name, config in runs.items():
            out = args.data / f"out{size}-{name.replace('=', '').replace('+', '-')}"
            seconds, peak = convert(args.repo.resolve(), scene.parent.parent if args.layout != "stacked" else scene.parent, out, *config)
            print(f"{size} | {name} | {gb:.2f} | {seconds:.1f} | {peak:.0f}", flush=True)


if __name__ == "__main__":
    main()

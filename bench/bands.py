#!/usr/bin/env python3
"""BigEarthNet-shaped patch folders against EuroSAT tiles, in one run, on the same machine.

1. Per image, single thread, page cache warm (best of --repeat passes over --n images): the whole
   Converter.convert() for a EuroSAT tile and for a BigEarthNet patch (truecolor), and for a
   patch the grid check through the GeoTIFF tags against opening the files with GDAL's
   georeferencing (the reason msrgb.sources.geotags exists).
2. With --workflow: real `snakemake --cores 2` runs: EuroSAT full, BigEarthNet full, BigEarthNet
   no-op rerun; wall seconds, seconds per image, peak memory of the largest process.

Usage: bench/bands.py --eurosat DIR --bigearthnet DIR [--n 2000] [--repeat 3] [--workflow]
                      [--work DIR]
(make the data with bench/make_eurosat.py and bench/make_bigearthnet.py)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import rasterio  # noqa: E402
from rasterio.io import DatasetReader, MemoryFile  # noqa: E402

from msrgb.config.parse import parse_products
from msrgb.jobs.convert import Converter  # noqa: E402
from msrgb.readers.band_image import BandImage
from msrgb.readers.gdal import enter_thread_gdal_env
from msrgb.sources.discovery import InputFormat, discover, discover_inputs  # noqa: E402
from msrgb.sources.geotags import read_grid  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from run import snakemake_command, timed  # noqa: E402


def best_ms(items: Sequence[object], step: Callable[[object, int], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for i, item in enumerate(items):
            step(item, i)
        best = min(best, time.perf_counter() - t0)
    return 1000 * best / len(items)


def per_image(eurosat: Path, bigearthnet: Path, n: int, repeat: int) -> None:
    enter_thread_gdal_env()
    products = parse_products(["truecolor"])
    converter = Converter(products)
    tiles = [eurosat / s.rel for s in discover(eurosat)[:n]]
    patches = [
        BandImage.of(bigearthnet, s)
        for s in discover_inputs(bigearthnet, InputFormat("band_folders"), ["B04", "B03", "B02"])[:n]
    ]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)

        def convert(item: object, i: int) -> None:
            converter.convert(item, {"truecolor": out / f"{i % 500}.png"})  # type: ignore[arg-type]

        tile_ms = best_ms(tiles, convert, repeat)
        patch_ms = best_ms(patches, convert, repeat)
    datas = [[p.read_bytes() for p in img.paths()] for img in patches[:500]]  # type: ignore[attr-defined]

    def tags(item: object, i: int) -> None:
        grids = [read_grid(d) for d in item]  # type: ignore[attr-defined]
        assert all(g is not None for g in grids)

    def gdal(item: object, i: int) -> None:
        crs = []
        for d in item:  # type: ignore[attr-defined]
            with MemoryFile(d) as mem:
                src = DatasetReader(mem.name, sharing=False)
                crs.append((src.crs, src.transform))
                src.close()
        assert all(c == crs[0][0] for c, _ in crs)

    tags_ms, gdal_ms = best_ms(datas, tags, repeat), best_ms(datas, gdal, repeat)
    print(f"rasterio {rasterio.__version__}, GDAL {rasterio.__gdal_version__}; single thread, best of {repeat}")
    print(f"EuroSAT tile (64x64x13, 1 file), convert(): {tile_ms:.3f} ms")
    print(f"BigEarthNet patch (3 of 12 files, 120x120), convert(): {patch_ms:.3f} ms = {patch_ms / tile_ms:.2f}x a tile")
    print(f"grid check of a patch's 3 files: GeoTIFF tags {tags_ms:.3f} ms, GDAL georeferencing {gdal_ms:.3f} ms")


def workflow(eurosat: Path, bigearthnet: Path, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for name, data, extra in (
        ("EuroSAT full", eurosat, []),
        ("BigEarthNet full", bigearthnet, ["layout=band_folders"]),
        ("BigEarthNet no-op", bigearthnet, ["layout=band_folders"]),
    ):
        out = work / ("out-" + name.split()[0])
        if name.endswith("full") and out.exists():
            shutil.rmtree(out)
        smk = snakemake_command(f"input_dir={data}", f"output_dir={out}", *extra)
        seconds, peak = timed(smk, work, work / f"{name.replace(' ', '-')}.log")
        images = sum(1 for _ in (out / "truecolor").rglob("*.png"))
        results.append((name, images, seconds, peak))
        print(f"{name}: {images} images, {seconds:.1f} s, {1000 * seconds / images:.2f} ms/image, peak {peak} MB", flush=True)
    tile = results[0][2] / results[0][1]
    patch = results[1][2] / results[1][1]
    print(f"per image: BigEarthNet patch / EuroSAT tile = {patch / tile:.2f}x; no-op over {results[2][1]} patches: {results[2][2]:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eurosat", type=Path, required=True)
    ap.add_argument("--bigearthnet", type=Path, required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workflow", action="store_true")
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "bands")
    args = ap.parse_args()
    per_image(args.eurosat, args.bigearthnet, args.n, args.repeat)
    if args.workflow:
        workflow(args.eurosat.resolve(), args.bigearthnet.resolve(), args.work.resolve())


if __name__ == "__main__":
    main()

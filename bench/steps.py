#!/usr/bin/env python3
"""Where the time goes: the cost per image of each step of the shard loop, single thread.

Runs each step of msrgb.jobs.convert.Converter.convert separately over the same files (best of
--repeat passes, page cache warm), then the whole convert() for comparison, and prints
milliseconds per image. The steps are the ones docs/performance.md lists.

The floor row is what any conversion of a tile costs here: read, SHA-256, the cheapest deflate of
its image, write through a temporary file and a rename; the last line gives convert()'s ratio to it.

Usage: bench/steps.py [--data DIR] [--n 2000] [--repeat 3] [--out DIR]
(DIR defaults to bench/out/eurosat-3000, generated if absent.)
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from rasterio.io import MemoryFile  # noqa: E402
from zlib_ng import zlib_ng  # noqa: E402

from msrgb.config.parse import parse_products
from msrgb.jobs.convert import Converter  # noqa: E402
from msrgb.readers.gdal import enter_thread_gdal_env
from msrgb.render.encoding import encode_image  # noqa: E402
from msrgb.storage.files import write_atomic  # noqa: E402


def gdal_from_memory(conv: Converter, path: Path, data: bytes) -> object:
    """What reading a tile cost before msrgb.readers.tiff: GDAL parsing the bytes in memory."""
    with MemoryFile(data) as memfile:
        return conv.reader._read(memfile.name, path)


def least_deflate(data: bytes) -> bytes:
    packer = zlib_ng.compressobj(1, zlib_ng.DEFLATED, 15, 8, zlib_ng.Z_HUFFMAN_ONLY)
    return packer.compress(data) + packer.flush()


def best_ms(files: list[Path], step: Callable[[Path, int], object], repeat: int) -> float:
    best = float("inf")
    for n in range(repeat):
        t0 = time.perf_counter()
        for f in files:
            step(f, n)
        best = min(best, time.perf_counter() - t0)
    return best / len(files) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO / "bench" / "out" / "eurosat-3000")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out", help="where the images go (/dev/shm: tmpfs)")
    args = ap.parse_args()
    if not args.data.exists():
        subprocess.run([sys.executable, str(REPO / "bench/make_eurosat.py"), str(args.data), "3000"], check=True)
    files = sorted(args.data.rglob("*.tif"))[: args.n]

    enter_thread_gdal_env()
    (product,) = parse_products(["truecolor"])
    conv = Converter([product])
    raw = {f: f.read_bytes() for f in files}
    tiles = {f: conv.read(f) for f in files}
    rgbs = {f: conv.render(tiles[f], product) for f in files}
    pngs = {f: encode_image(rgbs[f], product) for f in files}
    # the least any PNG of the tile costs: its rows unfiltered (a zero byte before each), deflated
    # Huffman-only, zlib-ng's fastest; no filter choice, no chunks
    unfiltered = {f: np.pad(rgbs[f].reshape(rgbs[f].shape[0], -1), ((0, 0), (1, 0))).tobytes() for f in files}
    # Every pass writes new files into its own folder: overwriting, or deleting between passes,
    # would time the file system's handling of just-freed inodes (see bench/run.py, set_aside).
    args.out.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="msrgb-steps-", dir=args.out))

    def png(kind: str, f: Path, n: int) -> Path:
        return out / f"{kind}{n}" / f"{f.stem}.png"

    def floor(f: Path, dest: Path) -> None:
        """What any conversion of the tile costs: its bytes read and hashed (provenance), the
        cheapest deflate of its image, a file written through a temporary name."""
        hashlib.sha256(f.read_bytes()).hexdigest()
        write_atomic(dest, least_deflate(unfiltered[f]))

    try:
        rows = [
            ("read the file (one open, one read)", lambda f, n: f.read_bytes()),
            ("SHA-256 of the source bytes", lambda f, n: hashlib.sha256(raw[f]).hexdigest()),
            ("parse + 3 bands from memory (msrgb.readers.tiff)", lambda f, n: conv.read(f, raw[f])),
            ("(GDAL: parse + 3 bands from memory)", lambda f, n: gdal_from_memory(conv, f, raw[f])),
            ("(GDAL: open + read from the file)", lambda f, n: conv.read(f)),
            ("stretch (lookup table)", lambda f, n: conv.render(tiles[f], product)),
            ("PNG encode", lambda f, n: encode_image(rgbs[f], product)),
            ("(deflate alone: no filter, Huffman only)", lambda f, n: least_deflate(unfiltered[f])),
            ("SHA-256 of the PNG", lambda f, n: hashlib.sha256(pngs[f]).hexdigest()),
            ("write temporary file + rename", lambda f, n: write_atomic(png("w", f, n), pngs[f])),
            ("floor: read, SHA-256, least deflate, write", lambda f, n: floor(f, png("f", f, n))),
            ("whole convert()", lambda f, n: conv.convert(f, {product.name: png("c", f, n)})),
        ]
        print(f"{len(files)} files from {args.data}, best of {args.repeat}, ms per image, images into {args.out}:")
        times = {}
        for label, step in rows:
            times[label] = best_ms(files, step, args.repeat)
            print(f"  {label:42s} {times[label]:6.3f}")
        print(f"whole convert() = {times[rows[-1][0]] / times[rows[-2][0]]:.2f}x the floor")
    finally:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()

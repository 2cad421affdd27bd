#!/usr/bin/env python3
"""Which deflate for the PNG encoder: time and size of each library on the filtered scanlines
of EuroSAT tiles (msrgb's own filter choice), single thread, best of 3.

Usage: bench/encoders.py [--data DIR] [--n 1000]
(DIR defaults to bench/out/eurosat-3000, generated if absent.) Libraries that are not
installed are left out: pip install zlib-ng isal deflate

bench/encoders.py --sheets PNG [PNG ...]: the encoders for contact sheets instead (a run's
{output_dir}/contact_sheets/<product>/*.png): Pillow's level 1 with run-length matching against
msrgb.render.pngenc.encode_png_quick, ms per sheet and mean bytes, best of 3.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from msrgb.config.parse import parse_products
from msrgb.jobs.convert import Converter  # noqa: E402
from msrgb.render import pngenc  # noqa: E402


def stream(module: object, level: int, strategy: int) -> Callable[[bytes], bytes]:
    def run(data: bytes) -> bytes:
        packer = module.compressobj(level, zlib.DEFLATED, 15, 8, strategy)  # type: ignore[attr-defined]
        return packer.compress(data) + packer.flush()

    return run


def candidates() -> list[tuple[str, Callable[[bytes], bytes]]]:
    found = [(f"zlib level {lv}{' huffman-only' if st == 2 else ''}", stream(zlib, lv, st)) for lv, st in ((6, 2), (1, 0), (6, 0))]
    try:
        zn = importlib.import_module("zlib_ng.zlib_ng")
        found += [(f"zlib-ng level {lv}{' huffman-only' if st == 2 else ''}", stream(zn, lv, st)) for lv, st in ((6, 2), (1, 0), (6, 0))]
    except ImportError:
        print("(zlib-ng not installed)")
    try:
        iz = importlib.import_module("isal.isal_zlib")
        found += [(f"ISA-L level {lv}", lambda d, lv=lv: iz.compress(d, lv)) for lv in (0, 1, 2)]
    except ImportError:
        print("(isal not installed)")
    try:
        dl = importlib.import_module("deflate")
        found += [(f"libdeflate level {lv}", lambda d, lv=lv: dl.zlib_compress(d, lv)) for lv in (1, 3, 6)]
    except ImportError:
        print("(deflate not installed)")
    return found


def sheets(paths: list[Path]) -> None:
    import io

    from PIL import Image

    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]

    def pillow(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG", compress_level=1, compress_type=3)
        return buf.getvalue()

    def huffman(a: np.ndarray) -> bytes:
        return pngenc.encode_png(a, *pngenc.PNG_COMPRESSION["huffman"])

    print(f"{len(images)} contact sheets, mean {np.mean([a.size for a in images]) / 1e6:.1f} MB of pixels: ms per sheet, mean bytes")
    for name, fn in [("Pillow level 1, run-length", pillow), ("msrgb encode_png_quick", pngenc.encode_png_quick), ("msrgb huffman (the images')", huffman)]:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            out = [fn(a) for a in images]
            best = min(best, time.perf_counter() - t0)
        assert all(np.array_equal(np.asarray(Image.open(io.BytesIO(o))), a) for o, a in zip(out, images))
        print(f"  {name:28s} {best / len(images) * 1e3:7.1f} ms  {sum(map(len, out)) / len(out):9.0f} B")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO / "bench" / "out" / "eurosat-3000")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--sheets", type=Path, nargs="+", help="contact sheet PNGs: time the sheet encoders instead")
    args = ap.parse_args()
    if args.sheets:
        sheets(args.sheets)
        return
    if not args.data.exists():
        subprocess.run([sys.executable, str(REPO / "bench/make_eurosat.py"), str(args.data), "3000"], check=True)
    (product,) = parse_products(["truecolor"])
    conv = Converter([product])
    files = sorted(args.data.rglob("*.tif"))[: args.n]
    lines = []
    for f in files:
        rgb = conv.render(conv.read(f, f.read_bytes()), product)
        x = rgb.reshape(rgb.shape[0], -1)
        lines.append(pngenc._filter_rows(x, np.zeros(x.shape[1], np.uint8), 3).tobytes())
    reference = stream(zlib, 6, 2)
    print(f"{len(files)} tiles from {args.data}: ms per tile, mean bytes, same bytes as zlib huffman-only")
    for name, fn in candidates():
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            out = [fn(d) for d in lines]
            best = min(best, time.perf_counter() - t0)
        same = all(o == reference(d) for o, d in zip(out, lines))
        print(f"  {name:28s} {best / len(lines) * 1e3:6.3f} ms  {sum(map(len, out)) / len(out):7.0f} B  {'yes' if same else 'no'}")


if __name__ == "__main__":
    main()

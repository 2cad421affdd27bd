#!/usr/bin/env python3
"""Make a dataset N times larger without N times the disk: N copies of every top folder of a
dataset (a BigEarthNet patch, a EuroSAT class), their files hard links to the originals.

The copies are ``<folder>_r<k>`` for k = 0..N-1, side by side in OUTPUT_DIR (on the same file
system as SOURCE_DIR). The files keep their names, sizes and times, so msrgb plans and converts
the copies as it would N times the data; the page cache holds the files once, as a real dataset
of that size would not. docs/performance.md ("How the figures grow") used 10 copies of 59,000
BigEarthNet patches: 590,000 folders, 7,080,000 links, about 80 s here.

Usage: link_copies.py SOURCE_DIR OUTPUT_DIR N
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source_dir")
    ap.add_argument("output_dir")
    ap.add_argument("n", type=int)
    args = ap.parse_args()
    if os.path.exists(args.output_dir):
        sys.exit(f"{args.output_dir} exists: give a new folder")
    t0 = time.monotonic()
    os.mkdir(args.output_dir)
    names = sorted(n for n in os.listdir(args.source_dir) if os.path.isdir(os.path.join(args.source_dir, n)))
    links = 0
    for k in range(args.n):
        for name in names:
            source, copy = os.path.join(args.source_dir, name), os.path.join(args.output_dir, f"{name}_r{k}")
            os.mkdir(copy)
            for entry in os.scandir(source):
                if entry.is_file(follow_symlinks=False):
                    os.link(entry.path, os.path.join(copy, entry.name))
                    links += 1
    print(f"{args.n * len(names)} folders, {links} links in {time.monotonic() - t0:.0f} s under {args.output_dir}")


if __name__ == "__main__":
    main()

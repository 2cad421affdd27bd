#!/usr/bin/env python3
"""The least a no-op rerun's planning costs in one process: listing every folder under DIR
and a `stat` of every file (what telling a changed input from an unchanged one takes when any
file may have been rewritten in place), in one Python thread. Prints both, best of --repeat
walks.

Compare with the planning of msrgb on the same folder (the no-op rows of bench/run.py minus
Snakemake alone's): at 59,000 BigEarthNet patches (708,000 band files) the walk alone takes
seconds on this project's VM, which is why msrgb walks many band folders in several processes
(docs/performance.md).

Usage: bench/stat_floor.py DIR [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time


def walk(top: str, stat: bool) -> int:
    """Files under ``top`` (hidden ones too), each stat'ed when ``stat``."""
    n, stack = 0, [top]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    n += 1
                    if stat:
                        entry.stat()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for stat in (False, True):
        best, n = float("inf"), 0
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            n = walk(args.dir, stat)
            best = min(best, time.perf_counter() - t0)
        what = "listing every folder and a stat of every file" if stat else "listing every folder"
        print(f"{what}: {n} files in {best:.2f} s ({best / max(n, 1) * 1e6:.2f} us a file)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Does the thread pool earn its place? Time one shard job's work (msrgb.jobs.shard.run_shard, the
function the workflow runs) with 1/2/4/8 threads, on local disk and through bench/slowfs.py
(a FUSE pass-through that adds a latency to every open and read, like a network file system).

Usage (root, or FUSE allowed; libfuse2 and `pip install fusepy` for the slow case):
    python bench/threads.py --n 3000 [--threads 1 2 4 8] [--latency-ms 0 2] [--repeat 3]
                            [--read-ahead 64] [--keep-cache]

--read-ahead is the workflow's read_ahead setting (0 = off). --keep-cache mounts the slow file
system with FUSE's kernel_cache (cached pages survive an open, as on NFS) and mounts it afresh
for every run, so that each run starts with nothing cached.

Prints ms per image for each (latency, threads), the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from msrgb.config.parse import parse_products
from msrgb.jobs.shard import run_shard  # noqa: E402
from msrgb.outputs import paths  # noqa: E402
from msrgb.planning import sharding  # noqa: E402
from msrgb.sources import discovery  # noqa: E402


def mount_slow(source: Path, mountpoint: Path, latency_ms: float, keep_cache: bool = False) -> subprocess.Popen[bytes]:
    mountpoint.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "slowfs.py"), str(source), str(mountpoint),
         "--latency-ms", str(latency_ms), *(["--keep-cache"] if keep_cache else [])]
    )  # fmt: skip
    for _ in range(100):
        if os.path.ismount(mountpoint):
            return proc
        time.sleep(0.1)
    proc.kill()
    sys.exit("slowfs did not mount (needs libfuse2, fusepy and /dev/fuse)")


def unmount(mountpoint: Path, proc: subprocess.Popen[bytes]) -> None:
    subprocess.run(["fusermount", "-u", str(mountpoint)], check=False)
    proc.wait(timeout=30)


def one_run(input_dir: Path, work: Path, threads: int, read_ahead: int) -> float:
    products = parse_products(["truecolor"], png_compression="huffman")
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    output = paths.OutputPaths(out)
    p = sharding.plan_shards(output, discovery.discover(input_dir), 1, products, threads)
    t0 = time.perf_counter()
    run_shard(output.shard_list(1, 0), output.state(1, 0), input_dir, products, threads, read_ahead=read_ahead)
    return (time.perf_counter() - t0) / len(p.members[0]) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 2.0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "msrgb-threads")
    ap.add_argument("--read-ahead", type=int, default=64, help="the read_ahead setting; 0 = off")
    ap.add_argument("--keep-cache", action="store_true", help="slow file system keeps its cache")
    args = ap.parse_args()

    data = args.work / f"eurosat-{args.n}"
    if not data.exists():
        subprocess.run(
            [sys.executable, str(REPO / "bench/make_eurosat.py"), str(data), str(args.n)],
            check=True,
        )
    print(f"{args.n} EuroSAT-shaped tiles; ms per image (best of {args.repeat}); cpus={os.cpu_count()}; "
          f"read_ahead={args.read_ahead}{'; slow file system keeps its cache' if args.keep_cache else ''}")  # fmt: skip
    print("latency_ms " + " ".join(f"{t:>9}" for t in (f"{n} thr" for n in args.threads)))
    mnt = args.work / "slow"
    for latency in args.latency_ms:
        def run(threads: int) -> float:
            if latency <= 0:
                return one_run(data, args.work, threads, args.read_ahead)
            mount = mount_slow(data, mnt, latency, args.keep_cache)
            try:
                return one_run(mnt, args.work, threads, args.read_ahead)
            finally:
                unmount(mnt, mount)

        row = [min(run(threads) for _ in range(args.repeat)) for threads in args.threads]
        print(f"{latency:>10} " + " ".join(f"{v:9.2f}" for v in row), flush=True)


if __name__ == "__main__":
    main()

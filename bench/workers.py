#!/usr/bin/env python3
"""Do two workers help each other? Images per second of one shard job alone and of two shard
jobs side by side (msrgb.jobs.shard.run_shard, one thread each, as `--cores 2` runs them), on the
same files, each run into a fresh output folder; with the CPU time the kernel spent (system
time), where two processes creating files in the same folders would show up.

Usage: bench/workers.py [--data DIR] [--work DIR] [--repeat 2] [--tmpfs]
(DIR defaults to bench/out/eurosat-3000, generated if absent.)
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
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

PRODUCTS = parse_products(["truecolor"])


def job(args: tuple[Path, Path, int]) -> float:
    data, out, shard = args
    output = paths.OutputPaths(out)
    t0 = time.perf_counter()
    run_shard(output.shard_list(2, shard), output.state(2, shard), data, PRODUCTS, 1)
    return time.perf_counter() - t0


def one_run(data: Path, work: Path, workers: int) -> tuple[float, float, float]:
    """(images/s, wall s, system s) of shard 0 alone (1 worker) or shards 0 and 1 at once."""
    out = work / f"out-{workers}-{time.time_ns()}"
    plan = sharding.plan_shards(paths.OutputPaths(out), discovery.discover(data), 2, PRODUCTS, 1)
    images = len(plan.members[0]) + (len(plan.members[1]) if workers == 2 else 0)
    before, t0 = os.times(), time.perf_counter()
    with multiprocessing.Pool(workers) as pool:
        pool.map(job, [(data, out, shard) for shard in range(workers)])
    wall, after = time.perf_counter() - t0, os.times()
    return images / wall, wall, after.children_system - before.children_system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO / "bench" / "out" / "eurosat-3000")
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "workers")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--tmpfs", action="store_true", help="outputs in /dev/shm")
    args = ap.parse_args()
    if not args.data.exists():
        subprocess.run([sys.executable, str(REPO / "bench/make_eurosat.py"), str(args.data), "3000"], check=True)
    work = Path(tempfile.mkdtemp(dir="/dev/shm")) if args.tmpfs else args.work
    work.mkdir(parents=True, exist_ok=True)
    print(f"{args.data}: images/s (wall s, system s), {args.repeat} runs each, alternating; "
          f"outputs on {'tmpfs' if args.tmpfs else work}")  # fmt: skip
    results: dict[int, list[tuple[float, float, float]]] = {1: [], 2: []}
    for _ in range(args.repeat):
        for workers in (1, 2):
            results[workers].append(one_run(args.data, work, workers))
    for workers, runs in results.items():
        cells = ", ".join(f"{r:.0f} ({w:.2f} s, sys {s:.2f} s)" for r, w, s in runs)
        print(f"  {workers} worker(s): {cells}")
    best = {w: max(r for r, _, _ in runs) for w, runs in results.items()}
    print(f"  two workers / one: {best[2] / best[1]:.2f}x the images per second (best runs)")


if __name__ == "__main__":
    main()

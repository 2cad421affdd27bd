#!/usr/bin/env python3
"""Benchmark msrgb against the reference thread-pool script, in one run, on the same data.

Scenarios (each a real `snakemake` run in a fresh working folder):
  baseline   the reference script (seed_baseline.py, thread mode) on the same data
  floor      the I/O floor (../shared/bench/io_floor.py): two processes that only read each
             tile and write a 12 KB file per tile through a temporary file and a rename, into
             the same kind of output folder; no converter can beat it
  full       full run from an empty output folder, DAG building included (best of --full-runs,
             each into a fresh folder)
  noop       rerun with everything up to date (median of 3, alternated with alone's no-op); this
             and the reruns below start once the full runs' files are on the disk (sync)
  add100     rerun after adding 100 new TIFFs (median of 3, each followed by the run that removes them)
  del1       rerun after deleting 1 PNG
  alone      Snakemake alone, for what no workflow can go below: a one-rule workflow's no-op
             (Snakemake's start, its plugins and its exit) and the same rule running one
             `script:` job that loads what a shard job loads (msrgb.jobs.shard), the least a rerun
             that converts anything costs (medians of 3)
Also reported: size of .snakemake/ and .snakemake/metadata, the output's .msrgb/ state, and the
peak memory (max RSS) of the largest process of each run, whichever it is (at 270,000 tiles the
summary job, see docs/performance.md).
The results of the previous benchmark are deleted after the report, not before (see set_aside).
With --cold-input the input files are dropped from the page cache (posix_fadvise DONTNEED, no
root needed) before the baseline and before the full run, as after a reboot or for a dataset
larger than memory; the software itself stays cached.

Usage: bench/run.py [--n 27000] [--data DIR] [--work DIR] [--cores 2] [--threads auto]
                    [--shards auto] [--baseline PATH] [--skip-baseline] [--scenarios ...]
                    [--cold-input] [--outputs disk tmpfs] [--full-runs 2] [--floor PATH]
                    [--set KEY=VALUE ...]
Every scenario runs with the outputs (the reference's, the floor's and msrgb's) on the --work
folder's disk, then on /dev/shm (tmpfs), and one table shows both; --outputs disk (or tmpfs)
runs one of them.
The baseline needs scikit-image (pip install scikit-image).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The runs measured keep Python's compiled modules (__pycache__) as a user's runs do: with
# PYTHONDONTWRITEBYTECODE set, every start compiles msrgb's modules again (about 0.1 s).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def du(path: Path) -> int:
    """Disk usage in bytes (allocated blocks, like du)."""
    if not path.exists():
        return 0
    return sum(
        p.lstat().st_blocks * 512 for p in path.rglob("*") if p.is_file() or p.is_dir()
    )


_PEAK = (
    "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(rc)"
)


#: ext4 without a journal (this benchmark's VM) skips inodes freed in the last minutes whenever it
#: creates a file, reading each one's inode to check: after 50,000 files are deleted, creating
#: files costs up to twice the CPU for several minutes (perf: recently_deleted, find_inode_bit;
#: still there 65 s after a deletion and a sync). So the previous results are not deleted before
#: the timed runs: they are renamed aside and deleted after the report. Back-to-back benchmarks
#: still pay for the previous one's deletion; leave a few minutes between them.
def set_aside(path: Path) -> Path | None:
    if not path.exists():
        return None
    trash = path.with_name(f"{path.name}.old-{time.time_ns()}")
    path.rename(trash)
    return trash


def evict(data: Path) -> None:
    """Drop the input files from the page cache. Clean pages go at once; the files were written
    long before (sync first in case they were not)."""
    os.sync()
    for f in data.rglob("*.tif"):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def snakemake_command(
    *config: str, cores: str = "2", configfile: Path = REPO / "config/config.yaml"
) -> list[str]:
    """The workflow of this checkout, quiet (rules only), with ``--config`` settings ``config``.
    Started as the ``snakemake`` command starts it, without the working folder on Python's path
    (``-P``): ``python -m`` would put it there, and Snakemake's search for its plugins then lists
    every folder in it at every start, here the reference script's 27,600 PNGs (about 0.2 s:
    docs/troubleshooting.md, "Every start of Snakemake is slow")."""
    return [
        sys.executable, "-P", "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile", str(configfile),
        "--cores", cores, "--quiet", "rules", "--config", *config,
    ]  # fmt: skip


def timed(cmd: list[str], cwd: Path, log: Path) -> tuple[float, int]:
    """Run ``cmd``; returns (wall seconds, peak RSS in MB of its largest process)."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(
            [sys.executable, "-c", _PEAK, *cmd], cwd=cwd, stdout=fh, stderr=subprocess.PIPE, text=True
        )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return wall, int(proc.stderr.strip().splitlines()[-1]) // 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=27000)
    ap.add_argument("--data", type=Path, help="EuroSAT-shaped input (generated if absent)")
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "out")
    ap.add_argument("--cores", default="2")
    ap.add_argument("--threads", default="auto", help="threads_per_shard")
    ap.add_argument("--shards", default="auto", help="shards (auto or a power of two)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more --config settings")
    ap.add_argument("--baseline", type=Path, default=REPO.parent / "shared/bench/seed_baseline.py")
    ap.add_argument("--floor", type=Path, default=REPO.parent / "shared/bench/io_floor.py")
    ap.add_argument(
        "--outputs", nargs="+", choices=["disk", "tmpfs"], default=["disk", "tmpfs"],
        help="where the outputs go: the --work folder's disk, /dev/shm, or each in turn",
    )  # fmt: skip
    ap.add_argument("--tmpfs", action="store_true", help="the same as --outputs tmpfs")
    ap.add_argument(
        "--full-runs", type=int, default=2,
        help="full runs into fresh folders, the best one reported (file creation is noisy here)",
    )  # fmt: skip
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--cold-input", action="store_true", help="input not in the page cache")
    ap.add_argument(
        "--scenarios", nargs="+", default=["floor", "alone", "full", "noop", "add100", "del1"],
        help="which workflow scenarios to run (full always runs first; floor: the I/O floor)",
    )  # fmt: skip
    args = ap.parse_args()

    work = args.work.resolve()
    data = (args.data or work / f"eurosat-{args.n}").resolve()
    if not data.exists():
        print(f"generating {args.n} EuroSAT-shaped files in {data} ...", flush=True)
        subprocess.run([sys.executable, str(REPO / "bench/make_eurosat.py"), str(data), str(args.n)], check=True)
    elif args.data:  # the table says how many files --data holds, not --n's default
        args.n = sum(1 for _, _, files in os.walk(data) for f in files if f.lower().endswith((".tif", ".tiff")))
    run_dir = work / "run"
    old = set_aside(run_dir)
    run_dir.mkdir(parents=True)
    locations = ["tmpfs"] if args.tmpfs else args.outputs
    results = {where: run_at(args, data, run_dir / where, where) for where in locations}
    report(args, results)
    if old:
        shutil.rmtree(old)


def run_at(args: argparse.Namespace, data: Path, run_dir: Path, where: str) -> dict[str, tuple[float, int]]:
    """Every scenario with the outputs on ``where`` (disk: under ``run_dir``; tmpfs: /dev/shm)."""
    run_dir.mkdir(parents=True)
    outputs = Path(tempfile.mkdtemp(prefix="msrgb-bench-", dir="/dev/shm")) if where == "tmpfs" else run_dir
    results: dict[str, tuple[float, int]] = {}
    if not args.skip_baseline:
        if args.cold_input:
            evict(data)
        results["baseline"] = timed(
            [sys.executable, str(args.baseline), str(data), str(outputs / "baseline"), "thread"],
            run_dir, run_dir / "baseline.log",
        )  # fmt: skip
    if "floor" in args.scenarios and args.floor.exists():
        results["floor"] = timed(
            [sys.executable, str(args.floor), str(data), str(outputs / "floor"), "interleaved"],
            run_dir, run_dir / "floor.log",
        )  # fmt: skip
    alone = SnakemakeAlone(run_dir / "alone", args.cores) if "alone" in args.scenarios else None
    fulls = []
    for k in range(args.full_runs):  # each into a fresh folder; the last one's is kept
        out = outputs / f"out{k}"
        smk = snakemake_command(
            f"input_dir={data}", f"output_dir={out}", f"threads_per_shard={args.threads}",
            f"shards={args.shards}", *args.set, cores=args.cores,
        )  # fmt: skip
        if args.cold_input:
            evict(data)
        fulls.append(timed(smk, run_dir, run_dir / f"full{k}.log"))
    results["full"] = min(fulls)
    # the reruns are timed once the full runs' files are on the disk, not while the kernel
    # writes them back (hundreds of MB, which Snakemake alone's runs in turn would not share)
    started = time.perf_counter()
    os.sync()
    print(f"{where}: the full runs' writes reached the disk in {time.perf_counter() - started:.2f} s (sync, not timed)")
    if "noop" in args.scenarios:  # medians of 3, alternated with Snakemake alone's
        noops, alones = [], []
        for k in range(3):
            noops.append(timed(smk, run_dir, run_dir / f"noop{k}.log"))
            if alone is not None:
                alones.append(alone.noop())
        results["noop"] = median(noops)
        if alones:
            results["alone_noop"] = median(alones)
    if alone is not None:
        results["alone_job"] = median([alone.job() for _ in range(3)])
    if "add100" in args.scenarios or "del1" in args.scenarios:
        timed_reruns(smk, data, run_dir, out, results)
    n_png = sum(1 for _ in (out / "truecolor").rglob("*.png"))
    print(f"{where}: .snakemake/ {du(run_dir / '.snakemake') / 1e6:.1f} MB "
          f"(metadata {du(run_dir / '.snakemake' / 'metadata') / 1e6:.2f} MB); "
          f"output state .msrgb/ {du(out / '.msrgb') / 1e6:.1f} MB; PNGs: {n_png}")  # fmt: skip
    if where == "tmpfs":
        shutil.rmtree(outputs)
    return results


_ALONE_SNAKEFILE = f"""\
import sys

sys.path.insert(0, {str(REPO)!r})
# as msrgb does: no second at exit, no cycle collection at the interpreter's shutdown
from msrgb.snakemake.settings import end_scheduler_timers, no_cycle_collection_at_exit

no_cycle_collection_at_exit()

rule all:
    input:
        "done.txt",


rule job:
    output:
        "done.txt",
    log:
        "script.log",
    script:
        "job.py"


onsuccess:
    end_scheduler_timers()
"""
_ALONE_SCRIPT = f"""\
import sys
from pathlib import Path

sys.path.insert(0, {str(REPO)!r})
import msrgb.jobs.shard  # what a shard job loads

Path(snakemake.output[0]).write_text("")
"""


def median(runs: list[tuple[float, int]]) -> tuple[float, int]:
    """The run of median wall time (of an odd number of runs)."""
    return sorted(runs)[len(runs) // 2]


class SnakemakeAlone:
    """A one-rule workflow whose job loads msrgb.jobs.shard, with the same Snakemake, plugins and
    flags as msrgb's runs: :meth:`noop` times its no-op rerun, :meth:`job` a rerun of its job."""

    def __init__(self, folder: Path, cores: str):
        self.folder = folder
        folder.mkdir()
        (folder / "Snakefile").write_text(_ALONE_SNAKEFILE)
        (folder / "job.py").write_text(_ALONE_SCRIPT)
        self.cmd = [sys.executable, "-P", "-m", "snakemake", "--cores", cores, "--quiet", "rules"]  # as msrgb's
        timed(self.cmd, folder, folder / "first.log")  # a first run also sets up .snakemake/

    def noop(self) -> tuple[float, int]:
        return timed(self.cmd, self.folder, self.folder / "noop.log")

    def job(self) -> tuple[float, int]:
        (self.folder / "done.txt").unlink()
        return timed(self.cmd, self.folder, self.folder / "job.log")


def timed_reruns(smk: list[str], data: Path, run_dir: Path, out: Path, results: dict[str, tuple[float, int]]) -> None:
    """add100 (the median of 3), then del1: 100 new TIFFs moved into the dataset, the run
    timed, then moved out again and the run that removes their images (untimed); then one PNG
    deleted."""
    subprocess.run(
        [sys.executable, str(REPO / "bench/make_eurosat.py"), str(run_dir / "new"), "100",
         "--start", "1000000"], check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    new_files = sorted((run_dir / "new").rglob("*.tif"))
    added = []
    for k in range(3):
        moved = []
        try:
            for f in new_files:
                dest = data / f.relative_to(run_dir / "new")
                try:
                    os.link(f, dest)  # the same file (and time) each round
                except OSError:  # another file system
                    shutil.copy2(f, dest)
                moved.append(dest)
            added.append(timed(smk, run_dir, run_dir / f"add100-{k}.log"))
        finally:
            for f in moved:  # leave the dataset as it was
                f.unlink(missing_ok=True)
        timed(smk, run_dir, run_dir / f"remove100-{k}.log")
    results["add100"] = median(added)
    victim = next((out / "truecolor" / "AnnualCrop").glob("*.png"))
    victim.unlink()
    results["del1"] = timed(smk, run_dir, run_dir / "del1.log")


def report(args: argparse.Namespace, results: dict[str, dict[str, tuple[float, int]]]) -> None:
    """One table: a row per scenario, for each output location the wall time, its ratio to the
    reference script (and for the full run to the I/O floor) and the peak memory."""
    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; data: {args.n} files; --cores {args.cores}, "
          f"threads_per_shard={args.threads}, shards={args.shards}"
          f"{', input evicted from the page cache' if args.cold_input else ''}")  # fmt: skip
    order = ("baseline", "floor", "alone_noop", "alone_job", "full", "noop", "add100", "del1")
    names = [n for n in order if any(n in r for r in results.values())]
    print(f"{'scenario':10s}" + "".join(f" | {where + ': wall s':>14s} {'vs base':>8s} {'vs floor':>8s} {'peak MB':>7s}" for where in results))
    for name in names:
        cells = []
        for runs in results.values():
            if name not in runs:
                cells.append(f" | {'-':>14s} {'':>8s} {'':>8s} {'':>7s}")
                continue
            wall, peak = runs[name]
            base, floor = runs.get("baseline", (None, 0))[0], runs.get("floor", (None, 0))[0]
            ratio = f"{wall / base:.2f}x" if base else "-"
            over = f"{wall / floor:.2f}x" if floor and name == "full" else "-"
            cells.append(f" | {wall:14.2f} {ratio:>8s} {over:>8s} {peak:7d}")
        print(f"{name:10s}" + "".join(cells))
    if any("alone_noop" in r for r in results.values()):
        print("alone_noop: a one-rule workflow's no-op; alone_job: its one `script:` job loading msrgb.jobs.shard")
        for where, runs in results.items():
            above = [
                f"{name} {runs[name][0] - runs[alone][0]:+.2f} s over {alone}"
                for name, alone in (("noop", "alone_noop"), ("add100", "alone_job"), ("del1", "alone_job"))
                if name in runs and alone in runs
            ]  # fmt: skip
            if above:
                print(f"msrgb above Snakemake alone, {where}: {', '.join(above)}")
    print("targets (docs/performance.md):")
    band_folders = "layout=band_folders" in args.set
    for where, runs in results.items():
        for line in targets(runs, band_folders):
            print(f"  {where}: {line}")


#: (scenario, what it is compared with, ratio or None, seconds over it or None): the targets
TARGETS = [
    ("full", "baseline", 0.25, None),
    ("noop", "alone_noop", None, 0.3),
    ("add100", "alone_job", None, 0.5),
]


def targets(runs: dict[str, tuple[float, int]], band_folders: bool = False) -> list[str]:
    """One line per target whose two runs are in ``runs``: the limit, the figure, met or not.
    Band folders (BigEarthNet: 12 files an image) may take 3 s over Snakemake alone's no-op."""
    lines = []
    for name, base, ratio, over in TARGETS:
        if band_folders and name == "noop":
            over = 3.0
        if name not in runs or base not in runs:
            continue
        wall, ref = runs[name][0], runs[base][0]
        limit = ref * ratio if ratio is not None else ref + over
        rule = f"<= {ratio}x {base}" if ratio is not None else f"<= {base} + {over} s"
        lines.append(f"{name} {wall:.2f} s {rule} ({limit:.2f} s): {'met' if wall <= limit else 'not met'}")
    return lines


if __name__ == "__main__":
    main()

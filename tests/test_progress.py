"""Seeing a run move: image counts before the run (dry runs too), live progress under a
terminal and in a log file, with a failing shard and Ctrl-C, and msrgb.tools.status around a run."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from conftest import REPO, run_engine, run_snakemake, run_totals

PROGRESS = re.compile(r"msrgb: (?:.*\| )?([\d,]+)/([\d,]+) images")

#: tiles in the module's dataset (ten classes of N / 10): enough for a conversion of several
#: seconds on two cores, so that the display shows figures between none and all
N = 12000


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> Path:
    """N EuroSAT-shaped tiles: a run long enough (a few seconds) to be seen moving."""
    root = tmp_path_factory.mktemp("progress") / "in"
    subprocess.run([sys.executable, str(REPO / "bench/make_eurosat.py"), str(root), str(N)], check=True, capture_output=True)
    return root


def snakemake_cmd(*args: str, **config: str) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile",
        str(REPO / "config" / "config.yaml"), "--cores", "2", *args,
        "--config", *(f"{k}={v}" for k, v in config.items()),
    ]  # fmt: skip


def run_in_terminal(cmd: list[str], cwd: Path, interrupt_after_progress: bool = False) -> tuple[int, bytes]:
    """Run ``cmd`` with stdout and stderr on a pseudo-terminal of 120 x 40; returns the exit
    code and everything written. With ``interrupt_after_progress`` a SIGINT (Ctrl-C) is sent once
    the first progress with images done shows."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    # Ctrl-C as at a terminal, whatever this process inherited: a shell without job control
    # starts background commands with SIGINT ignored, and their children keep that
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdin=side, stdout=side, stderr=side, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    os.close(side)
    output = b""
    interrupted = False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the other side is closed
                break
            if not chunk:
                break
            output += chunk
        if interrupt_after_progress and not interrupted and re.search(rb"[1-9][\d,]*/[\d,]+ images", output):
            os.killpg(proc.pid, signal.SIGINT)
            interrupted = True
        if proc.poll() is not None and not ready:
            break
    code = proc.wait(timeout=60)
    os.close(main)
    return code, output


def progress_values(text: str) -> list[tuple[int, int]]:
    return [(int(d.replace(",", "")), int(t.replace(",", ""))) for d, t in PROGRESS.findall(text)]


def test_progress_redraws_in_a_terminal_without_garbling_snakemake(tiles: Path, tmp_path: Path):
    code, raw = run_in_terminal(snakemake_cmd(input_dir=str(tiles), output_dir=str(tmp_path / "out")), tmp_path)
    text = raw.decode("utf-8", "replace")
    assert code == 0, text[-3000:]
    values = progress_values(text)
    done = [d for d, _ in values]
    # figures that only grow, several of them between none and all, then all
    assert done == sorted(done) and done[-1] == N and len({d for d in done if 0 < d < N}) >= 2, done
    assert {t for _, t in values} == {N}
    assert "\r" in text  # redrawn in place
    # every message of Snakemake's stays whole, on a line of its own
    lines = [line for part in text.split("\n") for line in part.split("\r")]
    finished = [line for line in lines if "Finished jobid" in line]
    assert finished and all(re.fullmatch(r"(\x1b\[\d+m)?Finished jobid: \d+ \(Rule: \w+\)(\x1b\[0m)?", f) for f in finished), finished
    assert "Exception in thread" not in text


def test_progress_in_a_log_file_is_one_line_per_interval(tiles: Path, tmp_path: Path):
    """stderr to a file, with -q: a plain line at most every progress_interval seconds."""
    log = tmp_path / "run.log"
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.run(
            snakemake_cmd("-q", input_dir=str(tiles), output_dir=str(tmp_path / "out"), progress_interval="2"),
            cwd=tmp_path, stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    seconds = time.monotonic() - t0
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    lines = [line for line in text.splitlines() if PROGRESS.match(line)]
    assert "\r" not in text and "%|" not in text
    assert 1 <= len(lines) <= seconds / 2 + 2, (seconds, lines)
    assert lines[-1].startswith(f"msrgb: {N:,}/{N:,} images"), lines
    assert f"msrgb: truecolor: {N:,} to convert, 0 to remove, 0 up to date" in text


def test_progress_with_a_failing_shard_and_printshellcmds(tiles: Path, tmp_path: Path):
    data = tmp_path / "in"
    data.mkdir()
    for cls in ("Forest", "River"):
        shutil.copytree(tiles / cls, data / cls)
    bad = data / "bad.tif"
    bad.write_bytes(b"II*\x00 truncated")
    proc = subprocess.run(
        snakemake_cmd("--printshellcmds", input_dir=str(data), output_dir=str(tmp_path / "out"), progress_interval="1"),
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode != 0
    values = progress_values(proc.stderr)
    # Snakemake stops the other shard's job when one fails: the last figures are where it was
    total = 2 * N // 10 + 1
    assert values and values[-1][1] == total and values[-1][0] <= total, values
    last = [line for line in proc.stderr.splitlines() if PROGRESS.match(line)][-1]
    assert last.endswith(", 1 bad"), last
    assert "bad.tif" in proc.stderr and "Exception in thread" not in proc.stderr


def test_ctrl_c_stops_the_progress_cleanly(tiles: Path, tmp_path: Path):
    code, raw = run_in_terminal(
        snakemake_cmd(input_dir=str(tiles), output_dir=str(tmp_path / "out"), shards="1"), tmp_path,
        interrupt_after_progress=True,
    )  # fmt: skip
    text = raw.decode("utf-8", "replace")
    assert code != 0, text[-2000:]
    assert "Exception in thread" not in text and "Traceback" not in text, text[-3000:]


def test_dry_run_counts_match_the_next_run_and_status(dataset: Path, tmp_path: Path):
    out = tmp_path / "out"
    first = run_snakemake(tmp_path, "-n", input_dir=str(dataset), output_dir=str(out))
    assert "msrgb: truecolor: 31 to convert, 0 to remove, 0 up to date" in first.stderr
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    pngs = sorted((out / "truecolor").rglob("*.png"))
    for png in pngs[:5]:
        png.unlink()
    (dataset / "Forest" / "Forest_2.tif").unlink()
    status = [sys.executable, "-m", "msrgb.tools.status", str(out), "--input", str(dataset)]
    assert subprocess.run(status, cwd=REPO, capture_output=True).returncode == 1
    dry = run_snakemake(tmp_path, "-n", input_dir=str(dataset), output_dir=str(out))
    missing = sum(1 for p in pngs[:5] if "Forest_2.png" not in str(p))
    line = f"msrgb: truecolor: {missing} to convert, 1 to remove, {30 - missing} up to date"
    assert line in dry.stderr, dry.stderr[:2000]
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    totals = run_totals(out)
    assert (totals["converted"], totals["up_to_date"]) == (missing, 30 - missing)
    assert subprocess.run(status, cwd=REPO, capture_output=True).returncode == 0
    again = run_snakemake(tmp_path, "-n", input_dir=str(dataset), output_dir=str(out))
    assert "msrgb: truecolor: 0 to convert, 0 to remove, 30 up to date" in again.stderr

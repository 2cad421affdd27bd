import json
import os
from pathlib import Path

import pytest

from msrgb import synth
from msrgb.config.parse import parse_products
from msrgb.errors import PlanError
from msrgb.outputs import paths, state
from msrgb.outputs.lock import lock_output
from msrgb.planning import sharding
from msrgb.sources import discovery


def test_discover_recursive_sorted_and_skips_hidden(tmp_path: Path):
    synth.generate(tmp_path, 1, classes=("Forest", "River"))
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.tif").write_bytes(b"")
    (tmp_path / "Forest" / "._Forest_1.tif").write_bytes(b"")
    (tmp_path / "Forest" / "notes.txt").write_text("x")
    (tmp_path / "A" / "B").mkdir(parents=True)
    (tmp_path / "A" / "B" / "UPPER.TIFF").write_bytes(b"x")
    rels = [s.rel for s in discovery.discover(tmp_path)]
    assert rels == ["A/B/UPPER.TIFF", "Forest/Forest_1.tif", "River/River_1.tif"]


def test_png_names_mirror_relative_paths():
    assert discovery.Source("A/B/x.y.TIFF", 0, 0).png_rel() == "A/B/x.y.png"


def test_colliding_names_are_rejected(tmp_path: Path):
    (tmp_path / "a.tif").write_bytes(b"x")
    (tmp_path / "a.tiff").write_bytes(b"x")
    with pytest.raises(PlanError, match="a.tif and a.tiff both map to a.png"):
        discovery.discover(tmp_path)


def _clashes_by_every_prefix(sources, suffix=".png"):
    """find_clashes as first written: every folder prefix of every output, the reference for
    the faster walk that stops at a folder already seen."""
    outputs: dict[str, str] = {}
    clashes = []
    for s in sources:
        key = discovery.output_rel(s.rel, suffix)
        if key in outputs:
            clashes.append((outputs[key], s.rel, f"both map to {key}"))
        else:
            outputs[key] = s.rel
    folders: dict[str, str] = {}
    for key, rel in outputs.items():
        parts = key.split("/")
        for i in range(1, len(parts)):
            folders.setdefault("/".join(parts[:i]), rel)
    clashes += [(rel, folders[key], f"clash: {key} would have to be both an image and a folder") for key, rel in outputs.items() if key in folders]
    return clashes


@pytest.mark.parametrize("seed", range(20))
def test_clashes_found_in_any_tree(seed: int):
    """Random trees of inputs whose outputs clash (a.tif next to a.tiff, an image next to a
    folder named like its output, at any depth): the same clashes, with the same partners, as
    checking every folder prefix."""
    import random

    rng = random.Random(seed)
    parts = ["a", "a.png", "b", "b.png", "c"]
    rels = set()
    for _ in range(rng.randint(1, 60)):
        depth = rng.randint(0, 3)
        folders = [rng.choice(parts) for _ in range(depth)]
        rels.add("/".join([*folders, rng.choice(["a", "b", "c"]) + rng.choice([".tif", ".tiff", ".TIF"])]))
    sources = sorted(discovery.Source(rel, 1, 1) for rel in rels)
    assert discovery.find_clashes(sources) == _clashes_by_every_prefix(sources)


@pytest.mark.parametrize("seed", range(40))
def test_the_quick_look_for_clashes_never_misses_one(seed: int):
    """find_clashes first looks at all the names at once and takes the full walk only when two
    outputs could clash: over random names (suffixes in any case, .SAFE, none, folders named like
    outputs, line breaks, other than ASCII) it finds what checking every prefix finds, with
    every suffix asked for, and it does skip the walk for names that cannot clash."""
    import random

    rng = random.Random(seed)
    stems = ["a", "b", "a.png", "x.jpg", "Ä", "line\nbreak", "tile_1", "tile_2"]
    ends = [".tif", ".TIF", ".tiff", ".TiFf", ".SAFE", ".safe", "", ".tif.tif", ".png"]
    rels = set()
    for _ in range(rng.randint(1, 12)):
        folders = [rng.choice(stems) for _ in range(rng.randint(0, 2))]
        rels.add("/".join([*folders, rng.choice(stems) + rng.choice(ends)]))
    sources = sorted(discovery.Source(rel, 1, 1) for rel in rels)
    suffixes = rng.choice([[".png"], [".png", ".jpg"], [".jpg"]])
    expected = [c for suffix in sorted(suffixes) for c in _clashes_by_every_prefix(sources, suffix)]
    assert discovery.find_clashes(sources, suffixes) == expected
    if expected:
        assert discovery._may_clash([s.rel for s in sources], suffixes)
    clean = [f"Forest/Forest_{i}.tif" for i in range(rng.randint(2, 50))] + ["b.TIF", "c.tiff", "d.SAFE"]
    assert not discovery._may_clash(clean, suffixes)
    assert not discovery._may_clash([*clean, "ü/ß 1.tif", "İ.tİf", "\u212a.tif"], suffixes)
    assert discovery._may_clash([*clean, "Forest/Forest_1.TIFF"], suffixes)
    assert discovery._may_clash([*clean, "d"], suffixes)  # a folder of band files beside d.SAFE
    assert discovery._may_clash([*clean, f"d{suffixes[0]}/e.tif"], suffixes)


HOSTILE_NAMES = ["plain/a.tif", "tab\there.tif", "line\nbreak.tif", "cr\rhere.tif", 'quote"d.tif', "ü/ß 1.tif", "comma,;.tif"]


@pytest.mark.parametrize("with_files", [True, False])
@pytest.mark.parametrize("names", [HOSTILE_NAMES[:1], HOSTILE_NAMES, HOSTILE_NAMES[-2:], []])
def test_manifest_rows_are_the_tsv_rows_for_any_name(names: list[str], with_files: bool):
    """The manifests' rows, made without a per-field check where no name needs quoting, are
    exactly the rows msrgb.storage.tsv writes (and reads back) for any file name, band files too."""
    from msrgb.storage import tsv

    kinds = (None, (), (("B04", "x/B04.tif"), ("B03", "y/B03.tif")), (("B04", "x/B04.tif"), ("B03", "t\tab/B03.tif")))
    for kind in [*range(len(kinds)), None]:  # None: the kinds mixed in one manifest
        sources = [
            discovery.Source(name, i, 10**18 + i, kinds[i % len(kinds) if kind is None else kind])
            for i, name in enumerate(names)
        ]
        fields = [
            [s.rel, s.size, s.mtime_ns, *(["bands", *(x for pair in s.files for x in pair)] if s.files is not None and with_files else [])]
            for s in sources
        ]  # fmt: skip
        text = discovery.rows_text(sources, with_files)
        assert text == tsv.text(fields)
        assert list(tsv.rows_of(text)) == [[str(f) for f in row] for row in fields]


def test_missing_input_folder(tmp_path: Path):
    with pytest.raises(PlanError, match="does not exist"):
        discovery.discover(tmp_path / "nope")


def test_shard_membership_is_stable_when_files_are_added():
    names = [f"C/C_{i}.tif" for i in range(5000)]
    before = {n: sharding.shard_of(n, 16) for n in names}
    more = names + [f"D/D_{i}.tif" for i in range(1000)]
    assert all(sharding.shard_of(n, 16) == before[n] for n in more[:5000])


def test_power_of_two_shards_nest():
    for n in (f"x/{i}.tif" for i in range(2000)):
        assert sharding.shard_of(n, 32) % 8 == sharding.shard_of(n, 8)


@pytest.mark.parametrize(
    "n_files, cores, expected",
    [(27000, 2, 4), (27000, 8, 16), (27000, 64, 128), (100, 2, 1), (1000, 2, 4), (270000, 2, 64), (0, 8, 1)],
)
def test_shard_count_adapts_to_files_and_cores(n_files, cores, expected):
    assert sharding.shard_count(n_files, cores, target_size=8000, min_size=200) == expected


def test_manifest_rewritten_only_when_content_changes(tmp_path: Path):
    output = paths.OutputPaths(tmp_path / "out")
    products = parse_products(["truecolor"])
    sources = [discovery.Source(f"C/{i}.tif", 10, 20) for i in range(50)]
    sharding.plan_shards(output, sources, 2, products)
    m0 = output.shard_list(2, 0)
    os.utime(m0, ns=(1, 1))
    sharding.plan_shards(output, sources, 2, products)
    assert m0.stat().st_mtime_ns == 1, "unchanged manifest must keep its mtime"
    changed = [discovery.Source(s.rel, 11, 20) for s in sources]
    sharding.plan_shards(output, changed, 2, products)
    assert output.shard_list(2, 0).stat().st_mtime_ns > 1
    members, digests = sharding.read_shard_list(output.shard_list(2, 0))
    assert digests == {"truecolor": products[0].digest(), "on_error": "fail"}
    assert all(m.size == 11 for m in members)


def test_related_states_cover_split_and_merged_shards(tmp_path: Path):
    output = paths.OutputPaths(tmp_path)
    for n, i in [(4, 1), (4, 3), (16, 5), (16, 6), (2, 1)]:
        output.state(n, i).parent.mkdir(parents=True, exist_ok=True)
        output.state(n, i).write_text(state.STATE_HEADER + "\n")
    found = {(int(p.parent.name), int(p.stem)) for p in output.related_states(8, 5)}
    assert found == {(4, 1), (16, 5), (2, 1)}


def test_refused_run_names_the_holder_even_if_it_has_just_taken_the_lock(tmp_path: Path):
    """The run holding the output folder writes who it is just after taking the lock; a run
    refused in that instant must wait for the line rather than report an unknown process (this
    race failed CI once)."""
    import fcntl
    import threading

    output = paths.OutputPaths(tmp_path / "out")
    lock = output.state_root / "run.lock"
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)  # another open file: flock sees another holder
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        late = threading.Timer(0.5, os.pwrite, (fd, b"pid 4242 on elsewhere since now\n", 0))
        late.start()
        with pytest.raises(PlanError, match=r"in use by another msrgb run \(pid 4242 on"):
            lock_output(output)
        late.join()
    finally:
        os.close(fd)
    # Once the holder has gone, the folder can be taken, and the line names this process.
    lock_output(output)
    assert lock.read_text().strip().startswith(f"pid {os.getpid()} on ")
    assert len(lock.read_bytes()) == 256


@pytest.mark.parametrize("seed", range(10))
def test_tsv_text_is_its_lines_for_any_rows(seed: int):
    """msrgb.storage.tsv.text, checked once for the whole text, writes exactly the rows line() writes
    one by one, whatever the fields hold (tabs, line breaks, quotes, empty rows, numbers)."""
    import random

    from msrgb.storage import tsv

    rng = random.Random(seed)
    pieces = ["a", "Forest_1.tif", "", "\t", "\n", "\r", '"', "ü", 12, -1, 3.5]
    for _ in range(50):
        rows = [[rng.choice(pieces) for _ in range(rng.randint(0, 4))] for _ in range(rng.randint(0, 6))]
        assert tsv.text(rows) == "".join(tsv.line(r) for r in rows)
        assert tsv.text(iter(rows)) == tsv.text(rows)


@pytest.mark.parametrize("seed", range(10))
def test_tsv_rows_read_what_the_csv_module_reads(seed: int, tmp_path: Path):
    """msrgb.storage.tsv.rows, which splits plain lines at their tabs and hands the rest to the csv
    module from the first quote or carriage return on, reads exactly the rows the csv module
    reads, from a file and from text, whatever the fields hold and wherever the first field
    needing quotes is."""
    import csv
    import io
    import random

    from msrgb.storage import tsv

    rng = random.Random(seed)
    pieces = ["a", "Forest_1.tif", "", "\t", "\n", "\r", '"', "ü", "x\r\ny", 12, -1]
    plain = ["a", "Forest_1.tif", "", "ü", 12]
    for _ in range(50):
        rows = [[rng.choice(plain if rng.random() < 0.8 else pieces) for _ in range(rng.randint(0, 4))] for _ in range(rng.randint(0, 8))]
        text = tsv.text(rows)
        want = [r for r in csv.reader(io.StringIO(text, newline=""), dialect="excel-tab") if r]
        assert list(tsv.rows_of(text)) == want
        path = tmp_path / "t.tsv"
        path.write_bytes(text.encode())
        assert list(tsv.rows(path)) == want


@pytest.mark.parametrize(
    "threads, mem_mb, words",
    [(64, None, ["64 CPUs", "has 2", "--set-threads convert_shard"]), (None, 99_000_000, ["99000000 MB", "mem_mb"])],
    ids=["threads", "memory"],
)
def test_a_shard_job_larger_than_the_largest_node_is_refused_before_anything_is_written(
    tmp_path: Path, threads, mem_mb, words
):
    """On Slurm, a request larger than the partition's largest node would stay pending forever:
    planning refuses it, naming the partition and the setting (tests/test_slurm.py does the
    same on a real cluster)."""
    from msrgb.engine.run import load_config
    from msrgb.planning.prepare import plan_run
    from msrgb.planning.settings import Settings, Where
    from msrgb.snakemake.slurm import NodeSize

    synth.generate(tmp_path / "tif", 1)
    settings = Settings.from_config(load_config({"input_dir": str(tmp_path / "tif"), "output_dir": str(tmp_path / "out")}))
    node = NodeSize("debug", 2, 4000)
    where = Where(cluster=True, parallel_jobs=4, node_size=node, threads_override=threads, mem_mb=mem_mb)
    with pytest.raises(PlanError) as refused:
        plan_run(settings, where, None)
    assert "Slurm partition debug" in str(refused.value)
    assert all(word in str(refused.value) for word in words), str(refused.value)
    assert not (tmp_path / "out").exists()
    fits = Where(cluster=True, parallel_jobs=4, node_size=node, threads_override=2, mem_mb=4000)
    assert plan_run(settings, fits, None).plan.n_shards >= 1


@pytest.mark.parametrize("names", [HOSTILE_NAMES[:1], HOSTILE_NAMES, [n for n in HOSTILE_NAMES if '"' not in n], []])
def test_a_shard_lists_member_paths_are_those_its_reader_reads(names: list[str]):
    """The summary counts a run's inputs from the shard lists without making a source of each:
    the same paths as the shard list's reader, for any name, band files or not."""
    products = parse_products(["truecolor"])
    for files in (None, (("B04", "x/B04.tif"), ("B03", "t\tab/B03.tif")), (("B04", "x/B04.tif"),)):
        sources = [discovery.Source(name, i, 10**18 + i, files) for i, name in enumerate(names)]
        text = sharding.shard_list_text(sources, products, "skip")
        assert sharding.member_paths(text) == [s.rel for s in sharding.read_shard_list_text(text)[0]] == names


@pytest.mark.parametrize("seed", range(30))
def test_a_shard_list_reads_back_as_written(seed: int):
    """A shard list read back gives its members and settings as written, whichever of its
    reader's paths reads it (plain stacked files at once; quoted names, band files, members
    named like its settings rows: folders of band files ``# product`` or ``# on_error``, one by
    one), and its members' paths are those the summary counts."""
    import random

    rng = random.Random(seed)
    names = ["a/1", "b 2", "!first", "# product", "# x", "# on_error", 'q"uote', "t\tab", "c\rr", "ü"]
    sources = set()
    for k in range(rng.randint(0, 30)):
        name = rng.choice(names[:2] if rng.random() < 0.7 else names) + (str(k) if rng.random() < 0.8 else "")
        folder = rng.random() < 0.2 or name in ("# product", "# on_error")  # else a TIFF, named so
        files = tuple((band, f"{name}/{band}.tif") for band in rng.sample(["B02", "B03", "B04"], rng.randint(0, 3)))
        sources.add(discovery.Source(name if folder else f"{name}.tif", k, 10**18 + k, files if folder else None))
    # members named as a settings row, after a member that sorts before them
    for name in [[], ["# product"], ["# on_error"], ["# product", "# on_error"]][seed % 4]:
        sources.add(discovery.Source(name, 2, 2, (("B04", "x/B04.tif"),)))
        if rng.random() < 0.5:
            sources.add(discovery.Source("!first.tif", 1, 1))
    sources = sorted(sources)
    products = parse_products(["truecolor", "ndvi"])
    on_error = rng.choice(["skip", "fail"])
    text = sharding.shard_list_text(sources, products, on_error)
    digests = {"on_error": on_error, **{p.name: p.digest() for p in products}}
    assert sharding.read_shard_list_text(text) == (sources, digests)
    assert sharding.member_paths(text) == [s.rel for s in sources]
    # a settings row among members (not written so): as the rows one by one read it
    odd = text + "# product\tx\ty\n"
    assert sharding.read_shard_list_text(odd) == (sources, {**digests, "x": "y"})


@pytest.mark.parametrize("on_error, dataset_stretch", [("skip", False), ("fail", False), ("skip", True)])
def test_counts_from_how_shard_lists_changed_are_those_of_the_records(
    tmp_path: Path, on_error: str, dataset_stretch: bool
):
    """A rerun's counts made from a due shard's shard list then and now (without reading its
    records) are those made from its records, over a run of changes: inputs added, removed,
    rewritten or touched, images deleted, bad inputs, the shard count changed, a run planned
    whose jobs never ran (as if killed), jobs that failed, a dataset-wide stretch's sample
    changed. A shard planning finds to have only new inputs has, by its records, those alone to
    convert and nothing to remove; its job, which then adds their records to the state without
    reading the others, leaves the records and images of a job that looks at every image (a
    twin output folder run without small changes)."""
    import contextlib
    import dataclasses
    import random

    from msrgb.engine import run as engine
    from msrgb.errors import MsrgbError
    from msrgb.outputs.lock import unlock_output
    from msrgb.outputs.paths import OutputListing
    from msrgb.outputs.state import StateCache
    from msrgb.planning.prepare import Prepared, plan_run, start_run
    from msrgb.planning.settings import Settings, Where
    from msrgb.planning.since import changes_since_last_job
    from msrgb.planning.work import count_work

    tifs = tmp_path / "tif"
    classes = ("Forest", "River", "SeaLake")
    synth.generate(tifs, 6, classes=classes)
    config = {
        "input_dir": str(tifs), "output_dir": str(tmp_path / "out"), "shards": 4, "on_error": on_error,
        "products": {"truecolor": None, "swir": None}, "contact_sheets": False, "progress": False,
    }  # fmt: skip
    if dataset_stretch:  # limits from a sample of the dataset: new limits make every image due
        stretch = {"type": "percentile", "low": 2, "high": 98, "scope": "dataset", "sample": 6}
        config["products"]["ds"] = {"preset": "truecolor", "stretch": stretch}
    rng = random.Random(11)
    quick = slow = added = 0

    def check(what: str) -> tuple[Settings, Prepared]:
        """Plan, and count the work again from the records of every due shard."""
        nonlocal quick, slow, added
        settings = Settings.from_config(engine.load_config(config))
        prepared = plan_run(settings, Where(parallel_jobs=2), None)
        output, plan = settings.output, prepared.plan
        stretches = [output.part_done(part, digest) for part, digest in plan.parts.items() if part.startswith("stretch/")]
        stretches += [output.stretch(p.name) for p in settings.products if p.dataset_stretch]  # as planning does
        recounted = count_work(
            output, plan, settings.products, on_error, stretches, OutputListing(), settings.input_dir, StateCache(),
            quick=False,
        )  # fmt: skip
        assert dataclasses.replace(prepared.counts, additions=[]) == recounted, what
        for shard in prepared.counts.additions:
            assert_only_additions(settings, plan.members[shard], plan.n_shards, shard, what)
            added += 1
        for shard in recounted.due:
            related = output.related_states(plan.n_shards, shard)
            if changes_since_last_job(output, plan, shard, settings.products, OutputListing(), related) is None:
                slow += 1
            else:
                quick += 1
        return settings, prepared

    for step in range(60):
        inputs = sorted(tifs.rglob("*.tif"))
        pngs = sorted((tmp_path / "out").rglob("*.png"))
        change = rng.choice(["add", "remove", "rewrite", "touch", "png", "bad", "shards", "none"])
        victim = rng.choice(inputs)
        if change == "add":
            for k in range(rng.randint(1, 3)):
                cls = rng.choice(classes)
                synth.write_tile(tifs / cls / f"{cls}_{100 + 3 * step + k}.tif", synth.make_tile(cls, step), (0.0, 0.0), 32632)
        elif change == "remove" and len(inputs) > 4:
            victim.unlink()
        elif change == "rewrite":
            synth.write_tile(victim, synth.make_tile("River", step), (0.0, 0.0), 32632)
        elif change == "touch":
            os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 1_000_000))
        elif change == "png" and pngs:
            lost = rng.choice(pngs)
            lost.unlink()
        elif change == "bad":
            victim.write_bytes(b"not a TIFF " * step)
        elif change == "shards":
            config["shards"] = 2 if config["shards"] == 4 else 4
        if change == "png" and pngs:  # the same image deleted in the twin
            (tmp_path / "twin" / lost.relative_to(tmp_path / "out")).unlink(missing_ok=True)
        check(f"step {step} ({change})")
        killed = rng.random() < 0.2
        for out in ("out", "twin"):
            more = {"output_dir": str(tmp_path / out), "small_change": 0 if out == "twin" else 1000}
            if killed:  # planned, then killed before any job ran
                twin = Settings.from_config(engine.load_config({**config, **more}))
                start_run(twin, plan_run(twin, Where(parallel_jobs=2), None))
                unlock_output(twin.output)
            else:
                with contextlib.suppress(MsrgbError):  # a bad input with on_error: fail; the other shards ran
                    engine.run({**config, **more}, cores=1)
        assert_same_records(tmp_path / "out", tmp_path / "twin", config["shards"], f"step {step} ({change})")
    # into a new output folder (a state of another shard count makes every shard it overlaps
    # read its records): an input recorded as bad (on_error: skip) or failed, then another
    # input of its shard touched
    config["shards"], config["output_dir"] = 4, str(tmp_path / "out2")
    engine.run({**config, "on_error": "skip"}, cores=1)
    inputs = sorted(tifs.rglob("*.tif"))
    inputs[0].write_bytes(b"not a TIFF")
    with contextlib.suppress(MsrgbError):
        engine.run(config, cores=1)
    rel = inputs[0].relative_to(tifs).as_posix()
    other = next(f for f in inputs[1:] if sharding.shard_of(f.relative_to(tifs).as_posix(), 4) == sharding.shard_of(rel, 4))
    os.utime(other, ns=(other.stat().st_atime_ns, other.stat().st_mtime_ns + 1_000_000))
    check("a bad input, then another input of its shard changed")
    # (with a dataset-wide stretch every due shard's records are read)
    assert (quick == 0 if dataset_stretch else quick > 10) and slow > 5, (quick, slow)
    assert dataset_stretch or added > 0, added


def assert_only_additions(settings, members, n_shards: int, shard: int, what: str) -> None:
    """By its records, the shard has its new inputs alone to convert, nothing to remove."""
    from msrgb.outputs.state import read_state_full
    from msrgb.planning.work import orphans, work_to_do

    output = settings.output
    before = read_state_full([*output.related_states(n_shards, shard), output.progress(n_shards, shard)])
    work = work_to_do(members, settings.products, before, settings.on_error, output.png_str, os.path.lexists, keep=False)
    recorded = {rel for rel, _ in before.records}
    assert {s.rel for s, _ in work.todo} == {s.rel for s in members} - recorded, what
    assert all(len(dests) == len(settings.products) for _, dests in work.todo), what
    assert not orphans(before, members, [p.name for p in settings.products], n_shards, shard), what
    assert not work.skipped_before and not before.skipped, what


def assert_same_records(one: Path, two: Path, n_shards: int, what: str) -> None:
    """The two output folders hold the same images, byte for byte, and each shard the same
    records, whatever the order of their rows."""
    from msrgb.outputs.paths import OutputPaths
    from msrgb.outputs.state import read_state_full

    def images(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.png") if ".msrgb" not in p.parts}

    assert images(one / "truecolor") == images(two / "truecolor"), what
    for shard in range(n_shards):
        a, b = (OutputPaths.at(root) for root in (one, two))
        ra = read_state_full([*a.related_states(n_shards, shard), a.progress(n_shards, shard)])
        rb = read_state_full([*b.related_states(n_shards, shard), b.progress(n_shards, shard)])
        assert ra == rb, (what, shard)


STACKED_VARIANTS = r"""
from msrgb.sources.discovery import discover

def walk(enough, piece, processes, executable, with_problems, limit=None):
    parallel_walk.ENOUGH_FILES, parallel_walk.PIECE, parallel_walk._processes = enough, piece, lambda: processes
    sys.executable, started[:] = executable, []
    problems = [] if with_problems else None
    try:
        found = discover(Path(sys.argv[1]), True, problems, processes=limit)
        return {"rows": [list(s)[:3] for s in found], "problems": problems, "helpers": len(started)}
    except PlanError as exc:
        return {"error": str(exc), "helpers": len(started)}

def reference(top, rel=""):  # the rules, walked plainly: hidden skipped, links to folders not followed
    rows = []
    for entry in sorted(os.scandir(os.path.join(top, rel)), key=lambda e: e.name):
        path = f"{rel}/{entry.name}" if rel else entry.name
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            try:
                rows += reference(top, path)
            except PermissionError:
                continue
        elif entry.name.lower().endswith((".tif", ".tiff")):
            try:
                st = os.stat(os.path.join(top, path))
                rows.append([path, st.st_size, st.st_mtime_ns])
            except OSError:
                rows.append([path, -1, -1])
    return rows

python = sys.executable
variants = [(10**9, 10**4, 1, python, w, None) for w in (True, False)]
variants += [(1, p, n, x, w, None) for w in (True, False) for p, n in [(4, 2), (7, 3), (1000, 2), (1, 4)] for x in (python, "")]
variants += [(1, 4, 2, "/bin/false", True, None), (1, 4, 2, "/nonexistent/python", True, None), (1, 4, 3, python, True, 1), (1, 4, 3, python, True, 2)]
out = [[list(v), walk(*v)] for v in variants]
Path(sys.argv[2]).write_text(json.dumps({"variants": out, "reference": sorted(reference(sys.argv[1]))}))
"""


def test_stacked_files_asked_by_several_processes_are_those_one_process_finds(tmp_path: Path):
    """Whatever the share of the files' sizes and times (pieces of any size, two to four
    processes, a helper that cannot start or that fails, as many processes as --cores allows),
    the TIFFs found, their sizes and times, and the problems are those of one process, and
    those of the rules walked plainly: hidden names skipped, links to files followed, links to
    folders not, a dangling link kept, an unreadable folder reported (or the error without a
    list of problems)."""
    import sys

    from conftest import assert_walk_variant, run_walk_variants

    root = tmp_path / "in"
    for folder, n, suffix in [("A", 30, ".tif"), ("B", 10, ".TIF"), ("B/sub/deep", 3, ".tiff"), ("ü ß", 2, ".tif"), (".hidden", 2, ".tif")]:
        (root / folder).mkdir(parents=True)
        for i in range(n):
            (root / folder / f"f {i}{suffix}").write_bytes(b"x" * (i + len(folder)))
    (root / "top.tif").write_bytes(b"t")
    (root / "A" / ".h.tif").write_bytes(b"h")
    (root / "notes.txt").write_text("not an image")
    (root / "link.tif").symlink_to(root / "A" / "f 3.tif")
    (root / "dangling.tif").symlink_to(root / "nowhere.tif")
    (root / "folder link").symlink_to(root / "A", target_is_directory=True)
    (root / "locked").mkdir()
    (root / "locked" / "x.tif").write_bytes(b"l")
    results = run_walk_variants(STACKED_VARIANTS, root, root / "locked", tmp_path)
    found = {tuple(v): r for v, r in results["variants"]}
    python = sys.executable
    one, one_error = found[(10**9, 10**4, 1, python, True, None)], found[(10**9, 10**4, 1, python, False, None)]
    assert one["rows"] == results["reference"] and len(one["rows"]) == 30 + 10 + 3 + 2 + 3, one["rows"]
    assert ["dangling.tif", -1, -1] in one["rows"] and one["problems"] == [["locked", one["problems"][0][1]]]
    assert "locked" in one_error["error"] and "cannot be read" in one_error["error"]
    for (_, _, processes, executable, with_problems, limit), got in found.items():
        n = min(processes, limit or processes)  # at most as many as the run's --cores
        shared = n > 1 and executable == python and with_problems  # (without, the locked folder stops it first)
        assert_walk_variant(got, executable, one if with_problems else one_error, n - 1 if shared else 0)


def assert_parts_kept(result) -> None:
    """Each shard's kept summary part is the part of its state as it is now."""
    from msrgb.jobs import part_files
    from msrgb.jobs.summary_parts import shard_part
    from msrgb.outputs.state import state_of_text

    suffixes = {p.name: p.suffix for p in result.settings.products}
    output, n = result.output, result.prepared.plan.n_shards
    for shard in range(n):
        state = output.state(n, shard).read_bytes()
        kept = part_files.read_part(output.kept_part(n, shard), part_files.made_from(state, suffixes))
        assert kept is not None, shard
        want = shard_part(state_of_text(state.decode()), suffixes)
        for name, p in want.products.items():
            got = kept.products[name]
            assert (got.manifest, got.envs, got.clip_rels, got.sample) == (p.manifest, p.envs, p.clip_rels, p.sample), shard
            assert (got.clip_figures is None) == (p.clip_figures is None) and (p.clip_figures is None or (got.clip_figures == p.clip_figures).all())
        assert (kept.envs, sorted(kept.skipped)) == (want.envs, sorted(want.skipped)), shard


def test_a_job_of_new_inputs_alone_leaves_what_a_job_of_every_image_leaves(tmp_path: Path):
    """Rounds of new inputs, among them names that need quoting, a bad input (on_error: skip),
    then an input removed beside a new one and an input rewritten: the small change's shard
    jobs that add the records of new inputs at their state's end, without reading the others,
    leave the images, records, manifest and errors.tsv of jobs that look at every image (a twin
    output folder, small_change 0); a state they wrote is one the next job adds to, or, once it
    holds a quoted name or a bad input, looks at every image again; the run after finds nothing."""
    import random

    from msrgb.engine import run as engine
    from msrgb.outputs.state import read_state_full, state_text

    tifs = tmp_path / "tif"
    classes = ("Forest", "River", "SeaLake")
    synth.generate(tifs, 8, classes=classes)
    config = {
        "input_dir": str(tifs), "shards": 4, "on_error": "skip", "products": {"truecolor": None, "ndvi": None},
        "contact_sheets": False, "progress": False,
    }  # fmt: skip
    outs = {"one": {"small_change": 1000}, "twin": {"small_change": 0}}

    def run_both(what: str) -> engine.RunResult:
        results = [engine.run({**config, **more, "output_dir": str(tmp_path / name)}) for name, more in outs.items()]
        one, twin = (tmp_path / name for name in outs)
        assert_same_records(one, twin, 4, what)
        for name in ("errors.tsv", "truecolor/manifest.tsv", "ndvi/manifest.tsv", "histograms/ndvi.png", "clipping/ndvi.png"):
            assert (one / name).read_bytes() == (twin / name).read_bytes(), (what, name)
        summaries = [json.loads((folder / "summary.json").read_text())["clipping"] for folder in (one, twin)]
        assert summaries[0] == summaries[1], what
        assert_parts_kept(results[0])
        return results[0]

    def appended(result: engine.RunResult) -> list[int]:
        """The shards whose state is not in the order a whole state is written: added to."""
        output, n = result.output, result.prepared.plan.n_shards
        texts = {s: output.state(n, s).read_text(encoding="utf-8") for s in range(n)}
        return [s for s, text in texts.items() if text != state_text(**vars(read_state_full([output.state(n, s)])))]

    run_both("first run")
    rng = random.Random(5)
    names = ["AA_new_{}.tif", "zz_new_{}.tif", "new {}.tif", "new\t{}.tif", 'new "{}".tif', "Aé_{}.tif"]
    quick: set[int] = set()
    for step in range(6):
        for k in range(rng.randint(2, 5)):
            cls = rng.choice(classes)
            name = rng.choice(names[:2] if step < 2 else names).format(10 * step + k)
            synth.write_tile(tifs / cls / name, synth.make_tile(cls, 10 * step + k), (0.0, 0.0), 32632)
        if step == 3:
            (tifs / "River" / "AA_bad.tif").write_bytes(b"II*\x00 not a TIFF")
        result = run_both(f"step {step}")
        assert result.prepared.changes, "a small change"
        quick.update(set(appended(result)) & set(result.prepared.counts.additions))
    assert len(quick) >= 2, quick  # the path was taken, by several shards

    again = engine.run({**config, "output_dir": str(tmp_path / "one")})
    assert not again.shards and not again.parts, "the run after finds nothing to do"
    # other changes beside new inputs, in states of plain names: a new input in the changed
    # shard and one in another shard, which alone is only added to
    tifs = tmp_path / "tif2"
    synth.generate(tifs, 8, classes=classes)
    config["input_dir"] = str(tifs)
    outs = {"one2": {"small_change": 1000}, "twin2": {"small_change": 0}}
    run_both("first run")

    def beside(rel: str, k: int, same: bool) -> int:
        """A new input in the shard of ``rel`` (or in another one): its shard."""
        shard = sharding.shard_of(rel, 4) if same else (sharding.shard_of(rel, 4) + 1) % 4
        name = next(f"Forest/AB_{k}_{i}.tif" for i in range(1000) if sharding.shard_of(f"Forest/AB_{k}_{i}.tif", 4) == shard)
        synth.write_tile(tifs / name, synth.make_tile("Forest", 90 + k), (0.0, 0.0), 32632)
        return shard

    for k, (what, rel) in enumerate([("rewritten", "SeaLake/SeaLake_2.tif"), ("image deleted", "River/River_3.tif"),
                                     ("removed", "Forest/Forest_1.tif"), ("touched", "River/River_4.tif")]):  # fmt: skip
        if what == "rewritten":
            synth.write_tile(tifs / rel, synth.make_tile("River", 98), (0.0, 0.0), 32632)
        elif what == "image deleted":
            for name in outs:
                (tmp_path / name / "ndvi" / rel).with_suffix(".png").unlink()
        elif what == "removed":
            (tifs / rel).unlink()
        else:
            os.utime(tifs / rel, ns=(0, (tifs / rel).stat().st_mtime_ns + 1_000_000))
        changed, other = beside(rel, k, True), beside(rel, 10 + k, False)
        result = run_both(f"an input {what} beside a new one")
        assert result.prepared.changes and result.prepared.counts.additions == [other], (what, changed, other)
    again = engine.run({**config, "output_dir": str(tmp_path / "one2")})
    assert not again.shards and not again.parts, "the run after finds nothing to do"

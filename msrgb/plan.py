"""Discovery, sharding and the shard manifests that drive incremental runs.

The workflow is planned at parse time:

* every ``*.tif``/``*.tiff`` under the input folder is found with one directory walk;
* each file goes to shard ``h & (S - 1)`` where ``h`` is a hash of its relative path and ``S``
  (the shard count) is a power of two; so a file never moves when others are added or removed,
  and changing ``S`` only splits or merges shards;
* each shard gets a manifest listing its files with their size and modification time, plus the
  digest of every product. The manifest is rewritten only when its content changes, so its
  modification time tells Snakemake exactly which shards have something new to do.

After a shard job, its *state file* records which PNG was made from which version of which file
under which settings. The next job of that shard skips every image whose record still holds.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from msrgb import bandfiles, tsv
from msrgb.errors import PlanError
from msrgb.files import (
    TIFF_SUFFIXES,
    Problems,
    is_stale_temporary,
    list_folder,
    output_rel,
    size_and_mtime,
    write_if_changed,
)
from msrgb.products import Product

STATE_DIR = ".msrgb"
# v2: tab-separated with quoting (msrgb.tsv), so that any file name fits; v1 files (no quoting,
# no tabs or line breaks in names) read the same. v3: the state records the radiometric scaling
# of each image; records of earlier states were made without radiometric offsets, so the jobs
# check those inputs once (msrgb.shard.work_to_do), and the new manifest header makes every
# shard job run once for that.
MANIFEST_HEADER = "# msrgb shard manifest v3"
STATE_HEADER = "# msrgb shard state v3"


@dataclass(frozen=True)
class Source:
    """One input image: its path relative to the input folder (POSIX form), size and mtime.

    An image made of band files (``layout: band_folders``) is its folder's path, with ``files``
    the (band, path relative to the input folder) to read; its ``size`` and ``mtime_ns`` are a
    fingerprint of all its band files (:func:`msrgb.bandfiles.fingerprint`)."""

    rel: str
    size: int
    mtime_ns: int
    files: tuple[tuple[str, str], ...] | None = None

    def png_rel(self) -> str:
        """The PNG path relative to a product folder: same folders, ``.png`` suffix."""
        return output_rel(self.rel)


def discover(input_dir: Path, with_stat: bool = True, problems: Problems | None = None) -> list[Source]:
    """Every ``.tif``/``.tiff`` (any case) under ``input_dir``, recursively, sorted by relative
    path. Hidden files and folders (names starting with ``.``) are skipped. Symbolic links to
    files are followed; links to folders are not (no cycles). Folders that cannot be read go to
    ``problems`` (see :func:`list_folder`)."""
    if not input_dir.is_dir():
        raise PlanError(f"input_dir {str(input_dir)!r} does not exist or is not a folder")
    found: list[Source] = []
    stack = [""]  # folders relative to input_dir, as POSIX strings ("" is the top)
    top = str(input_dir)
    while stack:
        rel_dir = stack.pop()
        prefix = f"{rel_dir}/" if rel_dir else ""
        for entry in list_folder(top, rel_dir, problems):
            name = entry.name
            if name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(prefix + name)
            elif name.lower().endswith(TIFF_SUFFIXES):
                found.append(Source(prefix + name, *size_and_mtime(entry, with_stat)))
    found.sort(key=lambda s: s.rel)
    if problems is None:
        check_names(found)
    return found


LAYOUTS = ("stacked", "band_folders")


@dataclass(frozen=True)
class Inputs:
    """How the input images are stored: ``stacked`` (one file holds all bands of an image) or
    ``band_folders`` (a folder per image, one file per band, named by ``band_pattern``)."""

    layout: str = "stacked"
    band_pattern: str = bandfiles.DEFAULT_BAND_PATTERN

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise PlanError(f"config 'layout': {self.layout!r} is not one of {list(LAYOUTS)}")
        bandfiles.compile_pattern(self.band_pattern)

    def to_dict(self) -> dict[str, str]:
        return {"layout": self.layout, "band_pattern": self.band_pattern}


def discover_inputs(
    input_dir: Path,
    inputs: Inputs,
    needed_bands: Iterable[str] = (),
    with_stat: bool = True,
    problems: Problems | None = None,
) -> list[Source]:
    """The images under ``input_dir`` (see :func:`discover`, and :mod:`msrgb.bandfiles` for
    band folders, whose sources list the files of the ``needed_bands``), sorted by path;
    folders that cannot be read go to ``problems``."""
    if inputs.layout == "stacked":
        return discover(input_dir, with_stat, problems)
    if not input_dir.is_dir():
        raise PlanError(f"input_dir {str(input_dir)!r} does not exist or is not a folder")
    pattern = bandfiles.compile_pattern(inputs.band_pattern)
    needed = sorted(set(needed_bands))
    found = []
    for image in bandfiles.discover_images(str(input_dir), pattern, with_stat, problems):
        size, mtime = bandfiles.fingerprint(image.files)
        files = tuple(bandfiles.choose(image.files, needed))
        found.append(Source(image.rel, size, mtime, files))
    found.sort(key=lambda s: s.rel)
    if problems is None:
        check_names(found)
    return found


def find_clashes(sources: Iterable[Source], suffixes: Iterable[str] = (".png",)) -> list[tuple[str, str, str]]:
    """Pairs of inputs whose outputs cannot both exist, with why: the same output (``a.tif`` and
    ``a.tiff``), or one's output is a folder the other's output needs (``a.tif`` next to a
    folder ``a.png/`` holding ``b.tif``)."""
    sources = list(sources)
    clashes = []
    for suffix in sorted(set(suffixes)):
        outputs: dict[str, str] = {}
        for s in sources:
            key = output_rel(s.rel, suffix)
            if key in outputs:
                clashes.append((outputs[key], s.rel, f"both map to {key}"))
            else:
                outputs[key] = s.rel
        folders: dict[str, str] = {}  # a folder the outputs need -> an input under it
        for key, rel in outputs.items():
            parts = key.split("/")
            for i in range(1, len(parts)):
                folders.setdefault("/".join(parts[:i]), rel)
        for key, rel in outputs.items():
            if key in folders:
                clashes.append(
                    (rel, folders[key], f"clash: {key} would have to be both an image and a folder")
                )
    return clashes


def clash_text(first: str, second: str, why: str) -> str:
    """One clash for a message; an image named after the input folder itself (band files
    directly in it) can clash with a sub-folder of the same name."""
    if first == second:
        return (
            f"the band files directly in the input folder (an image named {first!r} after the "
            f"folder) and the sub-folder {first!r} {why}"
        )
    return f"{first} and {second} {why}"


def check_names(sources: Iterable[Source], suffixes: Iterable[str] = (".png",)) -> None:
    """Fail when two inputs would write the same output (``a.tif`` and ``a.tiff``) or one's
    output would be a folder of the other's (:func:`find_clashes`)."""
    clashes = find_clashes(sources, suffixes)
    if clashes:
        raise clash_error(clashes)


def clash_error(clashes: Sequence[tuple[str, str, str]]) -> PlanError:
    """The error that refuses a run whose inputs' outputs clash, naming each pair."""
    return PlanError(
        "input files whose outputs clash (the same name with a different suffix, or a file "
        "named like a folder of outputs); rename one of each pair, or set on_error: skip to "
        "convert the others:\n  " + "\n  ".join(clash_text(*c) for c in clashes)
    )


def path_hash(rel: str) -> int:
    """A stable 64-bit hash of a relative path (the same on every machine and Python)."""
    return int.from_bytes(hashlib.blake2b(rel.encode("utf-8"), digest_size=8).digest(), "big")


def shard_count(n_files: int, parallelism: int, target_size: int, min_size: int) -> int:
    """The power-of-two shard count for ``n_files`` files and ``parallelism`` concurrent jobs.

    At least 2 shards per concurrent job (so a slow shard does not idle the others), at least
    ``n_files / target_size`` shards (so one shard is a few seconds of work), but no shard
    smaller than ``min_size`` files on average (each job costs a Python start-up)."""
    want = max(2 * max(parallelism, 1), -(-n_files // max(target_size, 1)))
    cap = max(1, n_files // max(min_size, 1))
    s = 1
    while s < min(want, cap):
        s *= 2
    while s > 1 and s > cap:
        s //= 2
    return s


def shard_of(rel: str, n_shards: int) -> int:
    return path_hash(rel) & (n_shards - 1)


def split(sources: Sequence[Source], n_shards: int) -> list[list[Source]]:
    """Members of each shard, each list sorted by relative path."""
    shards: list[list[Source]] = [[] for _ in range(n_shards)]
    for s in sources:
        shards[shard_of(s.rel, n_shards)].append(s)
    return shards


def manifest_text(
    members: Sequence[Source], products: Sequence[Product], on_error: str = "fail"
) -> str:
    rows: list[list[object]] = [[MANIFEST_HEADER], ["# on_error", on_error]]
    rows += [["# product", p.name, p.digest()] for p in products]
    rows += [[s.rel, s.size, s.mtime_ns, *_files_fields(s.files)] for s in members]
    return tsv.text(rows)


def _files_fields(files: tuple[tuple[str, str], ...] | None) -> list[str]:
    """The band files of an image in a manifest row: ``bands``, then band, path, band, path..."""
    return [] if files is None else ["bands", *(x for pair in files for x in pair)]


def read_manifest(path: Path) -> tuple[list[Source], dict[str, str]]:
    """Members and settings of a manifest file: product name -> digest, plus the key
    ``"on_error"`` for the error policy."""
    members, digests = [], {}
    for row in tsv.rows(path):
        if row[0] == "# product":
            digests[row[1]] = row[2]
        elif row[0] == "# on_error":
            digests["on_error"] = row[1]
        elif len(row) > 1:  # not the title row
            files = tuple(zip(row[4::2], row[5::2])) if len(row) > 3 else None
            members.append(Source(row[0], int(row[1]), int(row[2]), files))
    return members, digests


#: Names msrgb gives to files and folders of its own in the output folder (and ``manifest.tsv``
#: in each product's folder): no product may be named so, in any case.
RESERVED_NAMES = (
    STATE_DIR, "logs", "stretch", "contact_sheets", "histograms", "clipping", "legends",
    "errors.tsv", "summary.json", "manifest.tsv", "report.html",
)  # fmt: skip


def check_product_name(name: str) -> None:
    """Fail when a product's folder would be one of msrgb's own files or folders."""
    if name.lower() in (n.lower() for n in RESERVED_NAMES):
        raise PlanError(
            f"config 'products': a product cannot be named {name!r}: msrgb writes a file or "
            f"folder of that name in the output folder ({', '.join(RESERVED_NAMES)}); rename it"
        )


@dataclass(frozen=True)
class Layout:
    """Where the workflow keeps its files under the output folder."""

    output_dir: Path

    @classmethod
    def of_manifest(cls, manifest: Path) -> Layout:
        """The layout a manifest file belongs to (it lives at .msrgb/manifests/<S>/<i>.tsv)."""
        return cls(manifest.parents[3])

    @property
    def state_root(self) -> Path:
        return self.output_dir / STATE_DIR

    def manifest(self, n_shards: int, shard: int) -> Path:
        return self.state_root / "manifests" / f"{n_shards}" / f"{shard}.tsv"

    def state(self, n_shards: int, shard: int) -> Path:
        return self.state_root / "state" / f"{n_shards}" / f"{shard}.tsv"

    def state_pattern(self) -> str:
        """The state file of any shard, with the wildcards ``{n}`` (shard count) and ``{shard}``."""
        return str(self.state_root / "state" / "{n}" / "{shard}.tsv")

    def progress(self, n_shards: int, shard: int) -> Path:
        """Checkpoints of a shard job that has not finished (killed, failed); not a Snakemake
        output, so Snakemake neither deletes nor restores it."""
        return self.state_root / "progress" / f"{n_shards}" / f"{shard}.tsv"

    def live(self, n_shards: int, shard: int) -> Path:
        """How far a running shard job is (msrgb.progress), for the progress display."""
        return self.state_root / "live" / f"{n_shards}" / f"{shard}.json"

    def run_stats(self, n_shards: int, shard: int) -> Path:
        """What the last job of a shard did (counts, seconds), for the run summary."""
        return self.state_root / "runs" / f"{n_shards}" / f"{shard}.json"

    def run_started(self) -> Path:
        """Written by the main process when a run starts, for the run summary."""
        return self.state_root / "run_started"

    def sample(self, product: str) -> Path:
        """The files a dataset-wide stretch of ``product`` is computed from (msrgb.stats)."""
        return self.state_root / "samples" / f"{product}.json"

    def products_file(self) -> Path:
        """The products of the last run, for msrgb.status."""
        return self.state_root / "products.json"

    def inputs_file(self) -> Path:
        """How the inputs of the last run are stored (Inputs), for msrgb.status."""
        return self.state_root / "inputs.json"

    def plan_file(self) -> Path:
        return self.state_root / "plan.tsv"

    def product_dir(self, product: str) -> Path:
        return self.output_dir / product

    def stretch(self, product: str) -> Path:
        """The limits of a dataset-wide stretch (msrgb.stats), which every shard job reads."""
        return self.output_dir / "stretch" / f"{product}.json"

    def contact_sheet(self, product: str, sheet: str) -> Path:
        return self.output_dir / "contact_sheets" / product / f"{sheet}.png"

    def provenance(self, product: str) -> Path:
        return self.product_dir(product) / "manifest.tsv"

    def histogram(self, product: str) -> Path:
        """The histogram of the output values of a sample of the product's images."""
        return self.output_dir / "histograms" / f"{product}.png"

    def clipped_sheet(self, product: str) -> Path:
        """A contact sheet of the product's most clipped images."""
        return self.output_dir / "clipping" / f"{product}.png"

    def legend(self, product: str) -> Path:
        """The colour bar of a product drawn with a colour map."""
        return self.output_dir / "legends" / f"{product}.png"

    def planning_errors(self) -> Path:
        """What planning found it cannot convert (msrgb.files.Problems), for errors.tsv."""
        return self.state_root / "planning_errors.tsv"

    def errors_table(self) -> Path:
        return self.output_dir / "errors.tsv"

    def summary(self) -> Path:
        return self.output_dir / "summary.json"

    def log(self, rule: str, name: str | None = None) -> Path:
        """The log of one job of ``rule`` (``name`` may hold wildcards; None for a rule with
        one job)."""
        logs = self.output_dir / "logs"
        return logs / f"{rule}.log" if name is None else logs / rule / f"{name}.log"

    def png(self, product: Product | str, source: Source) -> Path:
        return Path(self.png_str(product, source))

    def png_str(self, product: Product | str, source: Source) -> str:
        """The image of ``source`` for ``product`` (a product name: a PNG), as a string (cheap
        enough for 100,000s of files). The suffix is the product's format's (.png, .jpg,
        .webp)."""
        if isinstance(product, str):
            return f"{self.output_dir}/{product}/{source.png_rel()}"
        return f"{self.output_dir}/{product.name}/{output_rel(source.rel, product.suffix)}"

    def related_states(self, n_shards: int, shard: int) -> list[Path]:
        """State files of any shard count whose shards overlap shard ``shard`` of
        ``n_shards`` (power-of-two shards nest), oldest first."""
        root = self.state_root / "state"
        found = []
        if root.is_dir():
            for sub in root.iterdir():
                if not sub.name.isdigit():
                    continue
                other = int(sub.name)
                common = min(other, n_shards)
                for f in sub.glob("*.tsv"):
                    if f.stem.isdigit() and int(f.stem) % common == shard % common:
                        found.append(f)
        return sorted(found, key=lambda f: f.stat().st_mtime_ns)


Records = dict[tuple[str, str], tuple[int, int, str]]
Skipped = dict[str, tuple[int, int, str]]
#: (relative path, product) -> (source sha256, PNG sha256, environment id)
Provenance = dict[tuple[str, str], tuple[str, str, str]]


@dataclass
class StateData:
    """Everything a state file holds: what was made from what (``records``), the inputs
    skipped as bad, the provenance of each PNG and the environments (id -> library versions)."""

    records: Records = field(default_factory=dict)
    skipped: Skipped = field(default_factory=dict)
    provenance: Provenance = field(default_factory=dict)
    envs: dict[str, str] = field(default_factory=dict)
    #: (relative path, product) -> clip figures as written (msrgb.render.clip_figures:
    #: share at 0 of red, green, blue, share at the top value of each, mean value)
    clipping: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (relative path, product) -> the radiometric scaling its image was made with, where one
    #: applied (msrgb.recipe.radiometry_text)
    radiometry: dict[tuple[str, str], str] = field(default_factory=dict)
    #: records read from state files of versions that applied no radiometric offsets
    legacy: set[tuple[str, str]] = field(default_factory=set)


def read_state_full(paths: Iterable[Path]) -> StateData:
    """All of the given state files, later files winning."""
    data = StateData()
    for path in paths:
        try:
            rows = list(tsv.rows(path))
        except FileNotFoundError:
            continue
        old = bool(rows) and rows[0][0] != STATE_HEADER
        for row in rows:
            kind = row[0]
            if kind == "# env":
                data.envs[row[1]] = row[2]
            elif kind == "!":
                _, rel, size, mtime, reason = row
                data.skipped[rel] = (int(size), int(mtime), reason)
            elif len(row) > 1:  # not the title row
                rel, size, mtime, product, digest = row[:5]
                data.records[(rel, product)] = (int(size), int(mtime), digest)
                if len(row) >= 8:
                    data.provenance[(rel, product)] = (row[5], row[6], row[7])
                if len(row) >= 9:
                    data.clipping[(rel, product)] = row[8]
                if len(row) >= 10 and row[9]:
                    data.radiometry[(rel, product)] = row[9]
                else:
                    data.radiometry.pop((rel, product), None)
                if old:
                    data.legacy.add((rel, product))
                else:
                    data.legacy.discard((rel, product))
                data.skipped.pop(rel, None)
    return data


def state_text(
    records: Records,
    skipped: Skipped | None = None,
    provenance: Provenance | None = None,
    envs: dict[str, str] | None = None,
    clipping: dict[tuple[str, str], str] | None = None,
    radiometry: dict[tuple[str, str], str] | None = None,
    legacy: set[tuple[str, str]] | None = None,
) -> str:
    """A state file: the environments, one row per image made (with its provenance when
    known), then one ``!`` row per input skipped as bad. ``legacy`` is not written: the records
    kept were checked (msrgb.shard.work_to_do)."""
    provenance = provenance or {}
    clipping = clipping or {}
    radiometry = radiometry or {}
    rows = [tsv.line([STATE_HEADER])]
    rows += [tsv.line(["# env", e, versions]) for e, versions in sorted((envs or {}).items())]
    field = tsv.field
    # written row by row with f-strings: this runs at every checkpoint of a shard job
    for key, (size, mtime, digest) in sorted(records.items()):
        known = provenance.get(key)
        # known[0] is a SHA-256 or JSON (band files), which has no tab or line break and does
        # not start with a quote: written as it is
        tail = f"\t{known[0]}\t{known[1]}\t{field(known[2])}" if known else ""
        if known and key in clipping:
            tail += f"\t{clipping[key]}"
            if key in radiometry:  # JSON: no tab or line break, starts with "{"
                tail += f"\t{radiometry[key]}"
        rows.append(f"{field(key[0])}\t{size}\t{mtime}\t{field(key[1])}\t{digest}{tail}\n")
    for rel, (size, mtime, reason) in sorted((skipped or {}).items()):
        rows.append(tsv.line(["!", rel, size, mtime, " ".join(reason.split())]))  # one line
    return "".join(rows)


@dataclass(frozen=True)
class Plan:
    """The shards of one run: ``members[i]`` are the sources of shard ``i``; every shard job
    uses ``threads`` threads."""

    n_shards: int
    members: list[list[Source]]
    threads: int = 1


def write_plan(
    layout: Layout,
    sources: Sequence[Source],
    n_shards: int,
    products: Sequence[Product],
    threads: int = 1,
    on_error: str = "fail",
) -> Plan:
    """Split ``sources`` into ``n_shards`` shards and write the manifests that changed, plus
    the plan file that names the shard count and threads for jobs started elsewhere."""
    members = split(sources, n_shards)
    for shard, shard_members in enumerate(members):
        write_if_changed(
            layout.manifest(n_shards, shard), manifest_text(shard_members, products, on_error)
        )
    write_if_changed(layout.plan_file(), f"shards\t{n_shards}\nthreads\t{threads}\n")
    return Plan(n_shards, members, threads)


def load_plan(layout: Layout) -> Plan:
    """The plan the main process wrote (for jobs that run on other machines, which must see
    the same shards and threads whatever their own command line says)."""
    try:
        text = layout.plan_file().read_text()
    except FileNotFoundError as exc:
        raise PlanError(f"{layout.plan_file()} is missing; run snakemake from the start") from exc
    try:
        values = {k: int(v) for k, v in (line.split("\t") for line in text.splitlines())}
        n_shards, threads = values["shards"], values["threads"]
    except (ValueError, KeyError) as exc:
        raise PlanError(f"{layout.plan_file()} is damaged; run snakemake from the start") from exc
    members = [read_manifest(layout.manifest(n_shards, i))[0] for i in range(n_shards)]
    return Plan(n_shards, members, threads)


class OutputListing:
    """Whether output files exist, from one listing per output folder and no per-file stat:
    cheap even for 100,000s of images. The first listing of a folder also deletes the
    temporary files that killed runs left in it. Call it with a path."""

    def __init__(self) -> None:
        self._names: dict[str, set[str]] = {}

    def __call__(self, path: str | Path) -> bool:
        folder, _, name = str(path).rpartition("/")
        names = self._names.get(folder)
        if names is None:
            try:
                names = set(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                names = set()
            for stale in [n for n in names if n.endswith(".tmp") and is_stale_temporary(n)]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, stale))
            self._names[folder] = names
        return name in names


def flag_shards_missing_outputs(
    layout: Layout, plan: Plan, products: Sequence[Product], present: OutputListing | None = None
) -> list[int]:
    """Find shards with a PNG missing on disk and mark their state file out of date (back-dated
    to one second before the shard's manifest), so Snakemake re-runs them ("updated input");
    the job then converts just the missing PNGs. An input the state records as skipped (bad,
    with ``on_error: skip``, and unchanged since) has no PNG on purpose. Lists every output
    folder of the plan through ``present`` (which removes stale temporaries on the way; pass
    one to share its listings with later checks). Returns the shards flagged."""
    present = present or OutputListing()
    flagged = []
    for shard, members in enumerate(plan.members):
        state = layout.state(plan.n_shards, shard)
        # every member is looked at (not only up to the first missing PNG), so stale
        # temporaries are removed from all of their folders
        missing = {s for s in members for p in products if not present(layout.png_str(p, s))}
        if not missing or not state.exists():  # without a state file Snakemake runs it anyway
            continue
        skipped = read_state_full([state]).skipped
        if any(skipped.get(s.rel, ())[:2] != (s.size, s.mtime_ns) for s in missing):
            older = max(1, layout.manifest(plan.n_shards, shard).stat().st_mtime_ns - 10**9)
            os.utime(state, ns=(older, older))
            flagged.append(shard)
    return flagged


_LOCKS: dict[str, int] = {}
_HOLDER_BYTES = 256  # the lock file holds one space-padded line naming the run that holds it
_HOLDER_WAIT_S = 5.0


def _read_holder(fd: int) -> str:
    """The line the lock's holder wrote. The holder writes it just after taking the lock, so a
    run that is refused in that instant finds the file still empty: wait a little for it."""
    deadline = time.monotonic() + _HOLDER_WAIT_S
    while True:
        holder = os.pread(fd, _HOLDER_BYTES, 0).decode("utf-8", "replace").strip()
        if holder or time.monotonic() > deadline:
            return holder or "unknown process"
        time.sleep(0.05)


def _release_holder_line(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)


def lock_output(layout: Layout) -> None:
    """Hold an exclusive lock on the output folder until this process ends, so that two runs
    (from any working directories) never work on one output folder at once. The kernel drops
    the lock when the process dies, even by ``kill -9``: a killed run leaves no stale lock."""
    path = layout.state_root / "run.lock"
    key = str(path.resolve())
    if key in _LOCKS:  # the Snakefile can be parsed more than once in one process
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    except OSError as exc:  # the first write into the output folder
        raise PlanError(
            f"config 'output_dir' {str(layout.output_dir)!r} cannot be written "
            f"({exc.strerror or exc}: {exc.filename}); choose a folder you can write to"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise PlanError(
            f"output folder {str(layout.output_dir)!r} is in use by another msrgb run "
            f"({holder}); wait for it to finish or choose another output_dir"
        ) from None
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    line = f"pid {os.getpid()} on {socket.gethostname()} since {started}"
    # One write of a fixed length replaces whatever a killed run left, with no empty moment.
    os.pwrite(fd, line.encode()[: _HOLDER_BYTES - 1].ljust(_HOLDER_BYTES - 1) + b"\n", 0)
    os.ftruncate(fd, _HOLDER_BYTES)
    atexit.register(_release_holder_line, fd)  # the lock itself goes with the process
    _LOCKS[key] = fd

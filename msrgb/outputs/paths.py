"""Where msrgb keeps its files under the output folder, and which of them exist."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from msrgb.errors import PlanError
from msrgb.storage.files import is_stale_temporary, output_rel
from msrgb.storage.listing import list_objects
from msrgb.storage.locations import S3Path, is_remote, location

if TYPE_CHECKING:
    from msrgb.config.products import Product
    from msrgb.sources.discovery import Source

STATE_DIR = ".msrgb"


#: Names msrgb gives to files and folders of its own in the output folder (and ``manifest.tsv``
#: in each product's folder): no product may be named so, in any case.
RESERVED_NAMES = (
    STATE_DIR, "logs", "stretch", "contact_sheets", "histograms", "clipping", "legends",
    "errors.tsv", "summary.json", "manifest.tsv", "report.html", "export",
)  # fmt: skip


def check_product_name(name: str) -> None:
    """Fail when a product's folder would be one of msrgb's own files or folders."""
    if name.lower() in (n.lower() for n in RESERVED_NAMES):
        raise PlanError(
            f"config 'products': a product cannot be named {name!r}: msrgb writes a file or "
            f"folder of that name in the output folder ({', '.join(RESERVED_NAMES)}); rename it"
        )


#: the file under the state folder naming where the images go when that is not the output
#: folder itself (an s3:// prefix; the output folder is then the local work folder)
IMAGES_AT = "images_at"


@dataclass(frozen=True)
class OutputPaths:
    """Where the workflow keeps its files under the output folder. With ``images`` (an
    ``s3://`` prefix) the images go there and ``output_dir`` is the local work folder that
    holds the rest (state, logs, summary, sheets), uploaded at the end of a run."""

    output_dir: Path
    images: str = ""

    @classmethod
    def at(cls, output_dir: Path) -> OutputPaths:
        """The layout of an output folder a run has written (where its images go included)."""
        try:
            images = (output_dir / STATE_DIR / IMAGES_AT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            images = ""
        return cls(output_dir, images)

    @classmethod
    def of_shard_list(cls, manifest: Path) -> OutputPaths:
        """The layout a manifest file belongs to (it lives at .msrgb/shard_lists/<S>/<i>.tsv)."""
        return cls.at(manifest.parents[3])

    @property
    def state_root(self) -> Path:
        return self.output_dir / STATE_DIR

    def images_at(self) -> Path:
        return self.state_root / IMAGES_AT

    def shard_list(self, n_shards: int, shard: int) -> Path:
        return self.state_root / "shard_lists" / f"{n_shards}" / f"{shard}.tsv"

    def state(self, n_shards: int, shard: int) -> Path:
        return self.state_root / "state" / f"{n_shards}" / f"{shard}.tsv"

    def done(self, n_shards: int, shard: int, token: str) -> Path:
        """The marker a finished job of a shard leaves, named by the shard's token
        (msrgb.planning.sharding): the target Snakemake is given for each shard."""
        return self.part_done(f"{n_shards}/{shard}", token)

    def part_done(self, part: str, digest: str) -> Path:
        """The marker of a finished job that makes ``part`` of the run's results (``stretch/<p>``,
        ``sheets/<p>``, ``summary``), named by a digest of what it is made from."""
        return self.state_root / "done" / part / digest

    def done_pattern(self) -> str:
        """The marker of any shard, with the wildcards ``{n}``, ``{shard}`` and ``{token}``."""
        return str(self.state_root / "done" / "{n}" / "{shard}" / "{token}")

    def kept_part(self, n_shards: int, shard: int) -> Path:
        """The summary part of the shard's state, kept for the next summary
        (msrgb.jobs.part_files)."""
        return self.state_root / "parts" / f"{n_shards}" / f"{shard}.json"

    def progress(self, n_shards: int, shard: int) -> Path:
        """Checkpoints of a shard job that has not finished (killed, failed); not a Snakemake
        output, so Snakemake neither deletes nor restores it."""
        return self.state_root / "progress" / f"{n_shards}" / f"{shard}.tsv"

    def live(self, n_shards: int, shard: int) -> Path:
        """How far a running shard job is (msrgb.snakemake.progress), for the progress display."""
        return self.state_root / "live" / f"{n_shards}" / f"{shard}.json"

    def run_stats(self, n_shards: int, shard: int) -> Path:
        """What the last job of a shard did (counts, seconds), for the run summary."""
        return self.state_root / "runs" / f"{n_shards}" / f"{shard}.json"

    def run_started(self) -> Path:
        """Written by the main process when a run starts, for the run summary."""
        return self.state_root / "run_started"

    def sample(self, product: str) -> Path:
        """The files a dataset-wide stretch of ``product`` is computed from (msrgb.jobs.stats)."""
        return self.state_root / "samples" / f"{product}.json"

    def products_file(self) -> Path:
        """The products of the last run, for msrgb.tools.status."""
        return self.state_root / "products.json"

    def input_format_file(self) -> Path:
        """How the inputs of the last run are stored (InputFormat: stacked or band folders,
        band_pattern), for msrgb.tools.status."""
        return self.state_root / "inputs.json"

    def input_dir_file(self) -> Path:
        """Where the inputs of the last run were (``input_dir``), to stop a run of another
        input folder from deleting the images of the first."""
        return self.state_root / "input_dir"

    def plan_file(self) -> Path:
        return self.state_root / "plan.tsv"

    def stac_search(self) -> Path:
        """The Items a ``stac_search`` found, saved when the run starts, which the jobs read."""
        return self.state_root / "stac-search.json"

    def product_dir(self, product: str) -> Path:
        """The product's folder in the output folder (its manifest.tsv; its images too unless
        they go to S3: :meth:`image_dir`)."""
        return self.output_dir / product

    def image_dir(self, product: str) -> Path | S3Path:
        """Where the product's images are: its folder, or its prefix in S3."""
        return location(f"{self.images}/{product}") if self.images else self.output_dir / product

    def stretch(self, product: str) -> Path:
        """The limits of a dataset-wide stretch (msrgb.jobs.stats), which every shard job reads."""
        return self.output_dir / "stretch" / f"{product}.json"

    def contact_sheet(self, product: str, sheet: str) -> Path:
        return self.output_dir / "contact_sheets" / product / f"{sheet}.png"

    def provenance(self, product: str) -> Path:
        return self.product_dir(product) / "manifest.tsv"

    def histogram(self, product: str) -> Path:
        """The histogram of the output values of a sample of the product's images."""
        return self.output_dir / "histograms" / f"{product}.png"

    def made_from(self, figure: Path) -> Path:
        """What ``figure``, a file of the output folder that a run draws (a histogram, the sheet
        of the most clipped images), was last drawn from (msrgb.jobs.report.write_looks)."""
        return self.state_root / "made_from" / f"{figure.relative_to(self.output_dir)}.txt"

    def clipped_sheet(self, product: str) -> Path:
        """A contact sheet of the product's most clipped images."""
        return self.output_dir / "clipping" / f"{product}.png"

    def legend(self, product: str) -> Path:
        """The colour bar of a product drawn with a colour map."""
        return self.output_dir / "legends" / f"{product}.png"

    def planning_errors(self) -> Path:
        """What planning found it cannot convert (msrgb.storage.files.Problems), for errors.tsv."""
        return self.state_root / "planning_errors.tsv"

    def errors_table(self) -> Path:
        return self.output_dir / "errors.tsv"

    def summary(self) -> Path:
        return self.output_dir / "summary.json"

    def export_dir(self, product: str) -> Path:
        """The dataset made of a product's images (msrgb.export); other tools rely on the name."""
        return self.output_dir / "export" / product

    def export_splits(self, product: str) -> Path:
        """The split each exported image went to, so that a new image moves no other."""
        return self.state_root / "export" / f"{product}.tsv"

    def log(self, rule: str, name: str | None = None) -> Path:
        """The log of one job of ``rule`` (``name`` may hold wildcards; None for a rule with
        one job)."""
        logs = self.output_dir / "logs"
        return logs / f"{rule}.log" if name is None else logs / rule / f"{name}.log"

    def png(self, product: Product | str, source: Source) -> Path | S3Path:
        return location(self.png_str(product, source))

    def png_str(self, product: Product | str, source: Source) -> str:
        """The image of ``source`` for ``product`` (a product name: a PNG), as a string (cheap
        enough for 100,000s of files). The suffix is the product's format's (.png, .jpg,
        .webp)."""
        root = self.images or self.output_dir
        if isinstance(product, str):
            return f"{root}/{product}/{source.png_rel()}"
        return f"{root}/{product.name}/{output_rel(source.rel, product.suffix)}"

    def image_top(self, product: str) -> str:
        """:meth:`image_dir` as a string: the prefix of every :meth:`png_str` of ``product``."""
        return f"{self.images or self.output_dir}/{product}"

    def related_states(self, n_shards: int, shard: int) -> list[Path]:
        """State files of any shard count whose shards overlap shard ``shard`` of
        ``n_shards`` (power-of-two shards nest), oldest first."""
        root = self.state_root / "state"
        found = []
        if root.is_dir():
            for sub in root.iterdir():
                found += [f for f in sub.glob("*.tsv") if shards_overlap(sub.name, f.stem, n_shards, shard)]
        return sorted(found, key=lambda f: f.stat().st_mtime_ns)

    def superseded_states(self, n_shards: int, shard: int) -> list[Path]:
        """State files of other shard counts overlapping shard ``shard`` of ``n_shards`` whose
        records the states of this count now hold: every shard of this count that overlaps one
        has a state newer than it (each job reads every overlapping state when it starts, and
        keeps the records that still hold). Such a file only keeps records of inputs removed
        since, which the shards' next jobs would count as to remove again and again."""
        superseded = []
        for path in self.related_states(n_shards, shard):
            count, index = int(path.parent.name), int(path.stem)
            if count == n_shards:
                continue
            covering = [j for j in range(n_shards) if j % count == index] if count < n_shards else [shard]
            try:
                since = path.stat().st_mtime_ns
                if all(self.state(n_shards, j).stat().st_mtime_ns > since for j in covering):
                    superseded.append(path)
            except FileNotFoundError:  # a shard of this count without a state yet
                continue
        return superseded


def shards_overlap(count: str, index: str, n_shards: int, shard: int) -> bool:
    """Whether shard ``index`` of ``count`` shards (folder and file name of a state file) holds
    inputs of shard ``shard`` of ``n_shards``: power-of-two shard counts nest."""
    if not (count.isdigit() and index.isdigit() and int(count) > 0):
        return False
    common = min(int(count), n_shards)
    return int(index) % common == shard % common


def leave_marker(marker: Path, keep: Iterable[str] = ()) -> None:
    """Create ``marker`` (and the names ``keep`` beside it) and delete every other marker in its
    folder: the markers of earlier runs of the same job."""
    marker.parent.mkdir(parents=True, exist_ok=True)
    names = {marker.name, *keep}
    for name in names:
        (marker.parent / name).touch()
    for old in marker.parent.iterdir():
        if old.name not in names:
            old.unlink(missing_ok=True)


class OutputListing:
    """Whether output files exist, from one listing per output folder and no per-file stat:
    cheap even for 100,000s of images. Call it with a path. With ``remove_stale`` (shard jobs
    only: planning writes nothing), the first listing of a folder also deletes the temporary
    files that killed runs left in it."""

    def __init__(self, remove_stale: bool = False, images: str = "") -> None:
        self._names: dict[str, set[str]] = {}
        self._remove_stale = remove_stale
        #: images in S3 (OutputPaths.images): listed whole, once, when first asked
        self._images = images
        self._listed: set[str] = set()

    def folders(self, folders: Iterable[str]) -> None:
        """List ``folders`` now (clearing their stale temporaries with ``remove_stale``)."""
        for folder in folders:
            self(f"{folder}/")

    def __call__(self, path: str | Path | S3Path) -> bool:
        folder, _, name = str(path).rpartition("/")
        return name in self.names(folder)

    def missing(self, top: str, suffix: str, sources: Iterable[Source]) -> list[Source]:
        """The ``sources`` without an output ``<top>/<output_rel(rel, suffix)>``: the same as
        asking for each :meth:`OutputPaths.png_str`, with one look-up per folder."""
        folders: dict[str, set[str]] = {}
        found = []
        for s in sources:
            folder, _, name = output_rel(s.rel, suffix).rpartition("/")
            names = folders.get(folder)
            if names is None:
                names = folders[folder] = self.names(f"{top}/{folder}" if folder else top)
            if name not in names:
                found.append(s)
        return found

    def names(self, folder: str) -> set[str]:
        """The names in ``folder`` (a path without its last ``/``), listed once."""
        names = self._names.get(folder)
        if names is None:
            if is_remote(folder):
                return self._remote_names(folder)
            try:
                names = set(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                names = set()
            if self._remove_stale:
                for stale in [n for n in names if n.endswith(".tmp") and is_stale_temporary(n)]:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(folder, stale))
            self._names[folder] = names
        return names

    def list_images(self) -> None:
        """List the images in S3 now (nothing for images in a folder, listed as asked)."""
        if self._images:
            self._remote_names(self._images)

    def _remote_names(self, folder: str) -> set[str]:
        """The names in ``folder`` (an s3:// "folder"). The whole image prefix is listed once, with
        one paginated LIST (1,000 objects per request), for every folder under it."""
        root = self._images if self._images and (folder + "/").startswith(self._images + "/") else folder
        if root not in self._listed:
            self._listed.add(root)
            for o in list_objects(S3Path.parse(root), what="output_dir"):
                parent, _, name = f"{root}/{o.rel}".rpartition("/")
                self._names.setdefault(parent, set()).add(name)
        return self._names.setdefault(folder, set())

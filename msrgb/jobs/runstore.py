"""The run's state in S3, for jobs that share no file system with the main process
(``--shared-fs-usage none``: Snakemake's cloud executors, or a cluster without a shared home).

Normally every process of a run reads and writes the run's state in the local work folder
(``work_dir``): the plan and shard_lists the main process writes when the run starts, the state
each shard job records. Without a shared file system each job starts in a folder of its own, so
the files it needs travel through the ``output_dir`` in S3, which the jobs write their images to
anyway: each file at its path relative to the work folder (``.msrgb/plan.tsv`` goes to
``s3://bucket/prefix/.msrgb/plan.tsv``). Who moves what (docs/object-storage.md):

- the main process, when jobs are about to run: the plan and the shard shard_lists, up;
- a shard job at its start: the plan and shard_lists, and the earlier states of its shard, down;
  at its end, even a failed one: its state, checkpoint and run figures, up (or deleted above
  when they are gone here);
- the dataset-wide stretch job: the limits it computed, up;
- the summary job (in the main process): the states and run figures of every shard, down.

No file is written by two jobs, so no lock is needed; each is written whole with one PUT.
Snakemake's own files (markers, logs) go through its default storage provider."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from msrgb.errors import InputError, MsrgbError, PlanError
from msrgb.outputs.paths import OutputPaths, shards_overlap
from msrgb.planning.sharding import plan_shard_count
from msrgb.sources.stac import StacItems
from msrgb.sources.stac_search import StacSearch
from msrgb.storage import remote
from msrgb.storage.files import write_atomic
from msrgb.storage.listing import ObjectInfo, list_objects
from msrgb.storage.locations import S3Path, is_remote, is_url

log = logging.getLogger("msrgb")


def check_reachable(input_dir: object, images: str) -> None:
    """Without a shared file system the jobs read their inputs and write their images where
    every machine reaches them: raises :class:`PlanError` naming the setting otherwise."""
    if not images:
        raise PlanError(
            "--shared-fs-usage none (or without input-output): the jobs share no file system, "
            "so output_dir must be in S3 (s3://bucket/prefix), where the jobs write the images "
            "and leave their state (docs/object-storage.md)"
        )
    if isinstance(input_dir, StacSearch):
        return
    if isinstance(input_dir, StacItems):
        if not (is_remote(input_dir.where) or is_url(input_dir.where)):
            raise PlanError(
                f"stac_items {input_dir.where!r} is a local file, which jobs that share no file "
                "system cannot read: put it in S3 or at an https:// URL, or search with stac_search"
            )
        return
    if isinstance(input_dir, Path):
        raise PlanError(
            f"input_dir {str(input_dir)!r} is a local folder, which jobs that share no file system "
            "cannot read: put the inputs in S3 (input_dir: s3://bucket/prefix)"
        )


class RunStore:
    """The mirror of ``layout``'s work folder in its ``output_dir`` in S3."""

    def __init__(self, output: OutputPaths):
        if not output.images:
            raise MsrgbError(
                "without a file system shared by the jobs (--shared-fs-usage none), output_dir "
                "must be in S3 (s3://bucket/prefix): the jobs' state travels through it"
            )
        self.output = output
        self.top = S3Path.parse(output.images)

    def url(self, path: Path) -> S3Path:
        """Where the work folder's file ``path`` goes in S3."""
        return self.top / path.relative_to(self.output.output_dir).as_posix()

    def push(self, paths: Iterable[Path]) -> None:
        """PUT each file of ``paths`` that exists here, DELETE above those that do not."""

        def one(path: Path) -> None:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                remote.delete(self.url(path))
                return
            remote.put(self.url(path), data)

        items = list(paths)
        _each(one, items)
        log.info("run state: %d file(s) sent to %s", len(items), self.top)

    def listing(self, folder: Path) -> list[ObjectInfo]:
        """What S3 holds of the work folder's ``folder`` (one LIST)."""
        return list_objects(self.url(folder), what="the run's state in output_dir")

    def pull(self, folder: Path, keep: Callable[[str], bool] = lambda rel: True) -> list[Path]:
        """Make ``folder`` of the work folder what it is in S3, for the files whose path
        relative to ``folder`` passes ``keep``: those there are fetched (with their time in S3,
        which orders states), those here and not there are deleted (nobody wrote them since:
        stale). One LIST, then one GET a file. Returns the files fetched."""
        there = {folder / info.rel: info for info in self.listing(folder) if keep(info.rel)}
        if folder.is_dir():
            for path in folder.rglob("*"):
                if path.is_file() and path not in there and keep(path.relative_to(folder).as_posix()):
                    path.unlink()

        def one(path: Path) -> None:
            write_atomic(path, remote.get(self.url(path)))
            os.utime(path, ns=(there[path].mtime_ns, there[path].mtime_ns))

        _each(one, sorted(there))
        log.info("run state: %d file(s) of %s fetched from %s", len(there), folder, self.top)
        return sorted(there)

    def pull_files(self, paths: Iterable[Path]) -> None:
        """Fetch the files ``paths``, each of which must be there (the plan, the shard lists,
        the limits of a dataset-wide stretch): raises :class:`PlanError` naming the first
        missing one."""

        def one(path: Path) -> None:
            try:
                data = remote.get(self.url(path))
            except InputError as exc:
                raise PlanError(
                    f"{self.url(path)} is missing: the run's main process leaves it there when "
                    "jobs are about to run; run snakemake again from the start"
                ) from exc
            write_atomic(path, data)

        _each(one, paths)


def _each(action: Callable[[Path], None], paths: Iterable[Path]) -> None:
    """``action`` on every path, 16 at once; the first error is raised after all are done."""
    items = list(paths)
    if not items:
        return
    with ThreadPoolExecutor(remote.FETCH_THREADS) as pool:
        futures = [pool.submit(action, path) for path in items]
    for future in futures:
        future.result()


def push_plan(output: OutputPaths, n_shards: int, extra: Sequence[Path] = ()) -> None:
    """Main process, when jobs are about to run: the plan file, where the images go, every
    shard's shard_list and the ``extra`` files the jobs read (the Items a STAC search found)."""
    paths = [output.plan_file(), output.images_at(), *(output.shard_list(n_shards, i) for i in range(n_shards))]
    RunStore(output).push([*paths, *extra])


def pull_plan(output: OutputPaths, extra: Sequence[Path] = ()) -> None:
    """A job's process, before it reads the plan: the plan file and the ``extra`` files, then
    the shard lists the plan names."""
    store = RunStore(output)
    store.pull_files([output.plan_file(), output.images_at(), *extra])
    n_shards = plan_shard_count(output)
    store.pull_files([output.shard_list(n_shards, i) for i in range(n_shards)])


def shard_files(output: OutputPaths, n_shards: int, shard: int) -> list[Path]:
    """What a shard job leaves for later runs: its state, checkpoint and run figures."""
    return [output.state(n_shards, shard), output.progress(n_shards, shard), output.run_stats(n_shards, shard)]


def push_earlier_states(output: OutputPaths) -> int:
    """Main process, when jobs are about to run: the states of this work folder that S3 does
    not hold (those of runs whose jobs shared the file system), so that a work folder moved to
    jobs without one does not convert everything again. One LIST. Returns how many were sent."""
    store = RunStore(output)
    folder = output.state_root / "state"
    there = {info.rel for info in store.listing(folder)}
    here = [p for p in folder.glob("*/*.tsv") if p.relative_to(folder).as_posix() not in there] if folder.is_dir() else []
    store.push(here)
    return len(here)


def pull_shard(output: OutputPaths, n_shards: int, shard: int) -> None:
    """A shard job at its start: the states of every shard count that overlap its shard (those
    :meth:`OutputPaths.related_states` finds) and its checkpoint."""
    store = RunStore(output)

    def related(rel: str) -> bool:
        count, _, name = rel.partition("/")
        return name.endswith(".tsv") and shards_overlap(count, name[: -len(".tsv")], n_shards, shard)

    store.pull(output.state_root / "state", related)
    mine = output.progress(n_shards, shard)
    store.pull(mine.parent, lambda rel: rel == mine.name)


def push_shard(output: OutputPaths, n_shards: int, shard: int) -> None:
    """A shard job at its end, failed or not."""
    RunStore(output).push(shard_files(output, n_shards, shard))


def pull_states(output: OutputPaths, n_shards: int) -> None:
    """The summary job: the states, checkpoints and run figures of every shard."""
    store = RunStore(output)
    for folder in ("state", "progress", "runs"):
        store.pull(output.state_root / folder / str(n_shards))

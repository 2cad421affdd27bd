"""What a shard job records: the outcome of each image (the state's records, provenance, clip
figures, radiometry, inputs skipped as bad), checkpoints, the run statistics the summary reads,
and the images whose input is gone.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from msrgb.config.products import Product
from msrgb.errors import OutputFileError
from msrgb.jobs.convert import Converted
from msrgb.outputs.paths import OutputPaths
from msrgb.outputs.provenance import environment_id, library_versions
from msrgb.outputs.state import StateData, record_row, skipped_row, state_text
from msrgb.planning.work import orphans
from msrgb.readers.images import InputImage
from msrgb.sources.bandfiles import ZIP_BAND
from msrgb.sources.discovery import Source
from msrgb.storage.files import remove_output, write_atomic
from msrgb.storage.locations import S3Path

log = logging.getLogger("msrgb")


@dataclass
class ShardResult:
    members: int = 0
    converted: int = 0
    up_to_date: int = 0
    removed: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: int = 0
    #: warnings about input values under a product's settings, each once
    notes: list[str] = field(default_factory=list)
    #: what the inputs' radiometric scaling overrode of what they declare -> how many inputs
    overrides: dict[str, int] = field(default_factory=dict)
    #: the records the job wrote to the shard's state, once it has: all of the state's, or
    #: those it added to the state text ``added_to``; and the text of the state it wrote
    kept: StateData | None = None
    added_to: str | None = None
    state: str | None = None


ON_ERROR = ("fail", "skip")


class Recorder:
    """Records the outcome of each image in the shard's result and state (``done``), and
    makes the text of the shard's checkpoint (:meth:`checkpoint_text`)."""

    def __init__(
        self,
        result: ShardResult,
        done: StateData,
        digests: dict[str, str],
        on_error: str,
        open_input: Callable[[Source], InputImage],
    ):
        self.result, self.done, self.digests = result, done, digests
        self.on_error, self.open_input = on_error, open_input
        versions = library_versions()
        self.env = environment_id(versions)
        done.envs[self.env] = versions
        self._snapshot: str | None = None  # the state at the first checkpoint
        self._since: list[str] = []  # the rows recorded after it, in order

    def checkpoint_text(self) -> str:
        """A state file that reads as :func:`state_text` of ``done`` does: the whole state as
        it was at the first checkpoint, then the rows of the outcomes recorded since, later rows
        winning (msrgb.outputs.state.read_state_full). Writing every record at every checkpoint would
        cost a job time that grows with the square of its images."""
        if self._snapshot is None:
            self._snapshot = state_text(**vars(self.done))
        return self._snapshot + "".join(self._since)

    def outcome(self, src: Source, dests: dict[str, Path | S3Path], outcome: Converted | BaseException) -> None:
        if isinstance(outcome, Converted):
            self.result.converted += 1
            for name in dests:
                key = (src.rel, name)
                self.done.records[key] = (src.size, src.mtime_ns, self.digests[name])
                self.done.provenance[key] = (outcome.source_of(name), outcome.image_sha[name], self.env)
                if name in outcome.clipping:
                    self.done.clipping[key] = clip_text(outcome.clipping[name])
                if name in outcome.radiometry:
                    self.done.radiometry[key] = outcome.radiometry[name]
                else:
                    self.done.radiometry.pop(key, None)
                if self._snapshot is not None:
                    self._since.append(record_row(self.done, key))
            for why in outcome.overrides:
                self.result.overrides[why] = self.result.overrides.get(why, 0) + 1
            for note in outcome.notes:
                if note not in self.result.notes:
                    self.result.notes.append(note)
                    log.warning("%s (first seen in %s)", note, src.rel)
            return
        self.result.failed.append(str(outcome))
        log.warning("%s", outcome)
        if self.on_error == "skip":
            reason = _reason(outcome, self.open_input(src).where)
            if src.files and src.files[0][0] == ZIP_BAND:  # named after the .SAFE it holds
                reason = f"{src.files[0][1]}: {reason}"
            self.done.skipped[src.rel] = (src.size, src.mtime_ns, reason)
            if self._snapshot is not None:
                self._since.append(skipped_row(src.rel, self.done.skipped[src.rel]))
        if self.on_error == "skip" or isinstance(outcome, OutputFileError):
            # no image from an earlier version of a bad input, none without its side files
            for out in dests.values():
                remove_output(out)


def _write_run_stats(
    output: OutputPaths, n_shards: int, shard: int, result: ShardResult, seconds: float
) -> None:
    """What this job did, for the run summary (msrgb.jobs.report reads it)."""
    stats = {
        "members": result.members,
        "converted": result.converted,
        "up_to_date": result.up_to_date,
        "skipped": result.skipped,
        "failed": len(result.failed),
        "seconds": round(seconds, 3),
        "finished": time.time(),
        "notes": result.notes,
        "overrides": result.overrides,
    }
    try:
        write_atomic(output.run_stats(n_shards, shard), json.dumps(stats).encode())
    except OSError as exc:
        log.error("could not record run statistics: %s", exc)


def clip_text(figures: Sequence[float]) -> str:
    """Clip figures as one state field: six shares with 4 decimals, the mean with 2."""
    return " ".join([*(f"{v:.4f}" for v in figures[:6]), f"{figures[6]:.2f}"])


def _reason(exc: BaseException, path: object) -> str:
    """The reason without the file name, which errors.tsv has in its own column."""
    text, prefix = str(exc), f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _remove_orphans(
    before: StateData,
    members: Sequence[Source],
    products: Sequence[Product],
    output: OutputPaths,
    n_shards: int,
    shard: int,
) -> int:
    """Delete the images this workflow made from input files that no longer exist."""
    by_name = {p.name: p for p in products}
    removed = 0
    for rel, product in orphans(before, members, list(by_name), n_shards, shard):
        png = output.png(by_name[product], Source(rel, 0, 0))
        if remove_output(png):
            removed += 1
            log.info("removed %s: its input %s is gone", png, rel)
    return removed

"""A due shard's work counted from how its shard list changed since its last job, without
reading its records (msrgb.planning.work.count_work), where those records are exactly what that
job made from the shard list still on disk."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from msrgb.config.products import Product
from msrgb.outputs.paths import OutputListing, OutputPaths
from msrgb.outputs.state import STATE_HEADER
from msrgb.planning.sharding import Plan, shard_list_file_text, shard_token


@dataclass
class Since:
    """What a shard's next job has to do, from its shard list then and now
    (:func:`changes_since_last_job`)."""

    #: product name -> images to make
    to_convert: dict[str, int]
    #: images to make for any product
    images: int
    #: recorded images whose input is gone (each product's)
    removed: int
    #: whether the inputs since are that job's, unchanged and with their images, and new ones
    #: only: the shard's job may then convert the new ones without looking at the others
    #: (msrgb.jobs.shard.run_shard's ``additions``)
    additions_only: bool = False


def changes_since_last_job(
    output: OutputPaths, plan: Plan, shard: int, products: Sequence[Product], present: OutputListing, related: Sequence[Path]
) -> Since | None:
    """What the next job of ``shard`` has to do, without reading its records, when they are
    exactly what its last job made from the shard list still on disk: that job ended (the marker
    of that list's token is there), no job of it since was killed or failed (no progress file),
    no other shard count's state holds its inputs, its state is of this version with no input
    recorded as bad, the settings rows (products, on_error) are unchanged and no product takes
    dataset-wide limits. Then every member of that list has its images, made with these
    settings: the job makes the images of the inputs new or changed (size, modification time)
    since, and those missing on disk (``present``), and deletes those of the inputs gone.
    ``related`` are the shard's state files (:meth:`OutputPaths.related_states`). None otherwise
    (the records must be read), or when a name is quoted in either list."""
    n_shards, new = plan.n_shards, plan.shard_lists[shard]
    if any(p.dataset_stretch for p in products):
        return None
    try:
        old = shard_list_file_text(output.shard_list(n_shards, shard))
    except (OSError, UnicodeDecodeError):  # none yet, or damaged: the records tell
        return None
    state = output.state(n_shards, shard)
    if (
        '"' in old
        or '"' in new
        or not output.done(n_shards, shard, shard_token(old)).exists()
        or output.progress(n_shards, shard).exists()
        or list(related) != [state]
    ):
        return None
    try:
        recorded = state.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # read again below, which says what is wrong
        return None
    if not recorded.startswith(STATE_HEADER + "\n") or "\n!\t" in recorded:
        return None
    old_lines, new_lines = old.split("\n"), new.split("\n")
    settings = [line for line in old_lines if line.startswith("# ")]
    if settings != [line for line in new_lines if line.startswith("# ")]:
        return None
    before = {line for line in old_lines if line and not line.startswith("# ")}
    now = [line for line in new_lines if line and not line.startswith("# ")]
    # a member is new or changed if its row differs in name, size or time (not in its band
    # files' names alone, which its records do not hold)
    gone = {line.partition("\t")[0]: line for line in before.difference(now)}
    changed, existed = set(), False
    for line in set(now).difference(before):
        rel = line.partition("\t")[0]
        was = gone.pop(rel, None)
        if was is None or was.split("\t", 3)[1:3] != line.split("\t", 3)[1:3]:
            changed.add(rel)
            existed |= was is not None
    kept = [s for s in plan.members[shard] if s.rel not in changed]
    to_convert, missing = {}, set()
    for p in products:
        lost = [s.rel for s in present.missing(output.image_top(p.name), p.suffix, kept)]
        to_convert[p.name] = len(changed) + len(lost)
        missing.update(lost)
    additions = not existed and not gone and not missing
    return Since(to_convert, len(changed) + len(missing), len(gone), additions)

"""A small change in one job: when a rerun has little to do (a few new, changed or deleted
inputs in shards converted before), its due shards, the contact sheets and the summary are made
by one job instead of a job per shard followed by the sheets' and the summary's jobs, each of
which costs a Python start-up (docs/how-it-works.md, "A small change runs as one job").

That job leaves every marker the separate jobs would have left (each shard's, the sheets' and
the summary's), so the run after it finds nothing to do, and one marker of its own, named by
:func:`changes_digest`, which is all Snakemake is asked for. Whether the workflow may use it
is decided in rules/common.smk (locally, with Snakemake's metadata dropped, without
png_targets or --report; planning passes no limit for an output_dir in S3); this module only
says which shards a change covers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from msrgb.outputs.paths import OutputPaths
from msrgb.planning.sharding import Plan
from msrgb.planning.work import WorkCounts


def small_change(
    output: OutputPaths, plan: Plan, counts: WorkCounts, stretch_inputs: Sequence[Path], limit: int
) -> tuple[int, ...]:
    """The shards due in this run (``counts.due``) if the run is a small change, else (): at
    most ``limit`` images to convert or remove (counted per input, the largest product's
    removals), and every due shard converted before (its state file exists; a first run or a
    shard that never finished runs as shards do). Not when a dataset-wide stretch is computed
    again in this run (``stretch_inputs`` missing): new limits can make every shard due."""
    if limit <= 0 or not all(path.exists() for path in stretch_inputs):
        return ()
    due = tuple(counts.due)
    removals = max((c.to_remove for c in counts.products.values()), default=0)
    if not due or counts.images + removals > limit:
        return ()
    if not all(output.state(plan.n_shards, s).exists() for s in due):
        return ()
    return due


def made_by_changes(plan: Plan) -> list[str]:
    """The parts (:attr:`Plan.parts`) the job of a small change makes besides the shards: the
    contact sheets of every product and the summary."""
    return [part for part in plan.parts if part == "summary" or part.startswith("sheets/")]


def changes_digest(output: OutputPaths, plan: Plan, shards: Sequence[int]) -> str:
    """What names the marker of a small change's job: the due shards' tokens, the size and time
    of their states, and the digests of the parts it makes, so that another change (or the same
    change with other settings) gets another marker. With the states: when the inputs go back
    to what an earlier change made them (new files taken away again) after a change's job
    failed past its shards, that earlier change's marker does not stand for the change."""
    states = []
    for s in shards:
        st = output.state(plan.n_shards, s).stat()
        states.append([st.st_size, st.st_mtime_ns])
    what = [[[s, plan.tokens[s]] for s in shards], {p: plan.parts[p] for p in made_by_changes(plan)}, states]
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def changes_done(output: OutputPaths, plan: Plan, shards: Sequence[int]) -> Path:
    """The marker the job of a small change leaves."""
    return output.part_done("changes", changes_digest(output, plan, shards))

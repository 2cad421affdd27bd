"""What a run made: the table of skipped inputs and the run summary, from the shard files."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from msrgb import tsv
from msrgb.files import output_rel, write_atomic, write_if_changed
from msrgb.plan import Layout, Plan, StateData

log = logging.getLogger("msrgb")

ERRORS_COLUMNS = ("file", "reason")


def write_errors(data: StateData, out: Path) -> list[tuple[str, str]]:
    """Write ``errors.tsv`` from the shards' state (a header row, then one row per skipped
    file, sorted; msrgb.tsv quotes names with tabs or line breaks); the table has only its
    header when nothing was skipped."""
    errors = sorted((rel, reason) for rel, (_, _, reason) in data.skipped.items())
    write_atomic(out, tsv.text([ERRORS_COLUMNS, *errors]).encode("utf-8"))
    if errors:
        log.warning("%d input file(s) skipped as bad, listed in %s", len(errors), out)
    return errors


def summarize(layout: Layout, plan: Plan, n_products: int, skipped: int) -> dict:
    """The run summary: images per class (top folder), and what the shard jobs of this run did
    (those that finished after the run started), wall time and images per second."""
    try:
        started = float(layout.run_started().read_text())
    except (FileNotFoundError, ValueError):
        started = None
    per_class: dict[str, int] = {}
    for members in plan.members:
        for s in members:
            top = s.rel.split("/", 1)[0] if "/" in s.rel else "."
            per_class[top] = per_class.get(top, 0) + 1
    totals = {"converted": 0, "up_to_date": 0, "failed": 0, "shard_jobs": 0}
    notes: list[str] = []
    for shard in range(plan.n_shards):
        try:
            stats = json.loads(layout.run_stats(plan.n_shards, shard).read_text())
        except (FileNotFoundError, ValueError):
            continue
        if started is not None and stats["finished"] < started:
            continue  # from an earlier run
        totals["shard_jobs"] += 1
        for key in ("converted", "up_to_date", "failed"):
            totals[key] += stats[key]
        notes += [n for n in stats.get("notes", []) if n not in notes]
    wall = time.time() - started if started is not None else None
    return {
        "images": sum(per_class.values()),
        "images_per_class": dict(sorted(per_class.items())),
        "products": n_products,
        "shards": plan.n_shards,
        **totals,
        "skipped": skipped,
        "wall_seconds": round(wall, 2) if wall is not None else None,
        "images_per_second": round(totals["converted"] / wall, 1) if wall else None,
        # warnings about input values under the products' settings, each once per run
        "notes": notes,
    }


def summary_table(summary: dict) -> str:
    """A short plain-text table of a summary, for the end of a run."""
    rows = [(name, str(n)) for name, n in summary["images_per_class"].items()]
    rows += [
        ("images", str(summary["images"])),
        ("converted this run", str(summary["converted"])),
        ("up to date", str(summary["up_to_date"])),
        ("skipped (errors.tsv)", str(summary["skipped"])),
        ("failed", str(summary["failed"])),
        ("wall time", f"{summary['wall_seconds']} s"),
        ("images per second", str(summary["images_per_second"])),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value:>8}" for name, value in rows)


def write_summary(path: Path, summary: dict) -> None:
    write_atomic(path, (json.dumps(summary, indent=2) + "\n").encode())


MANIFEST_COLUMNS = ("path", "source_size", "source_sha256", "png_sha256", "settings_digest", "env")


def provenance_text(product: str, digest: str, data: StateData) -> str:
    """The provenance manifest of one product: one line per PNG (path relative to the product
    folder), with the environments (library versions) referenced by id in the header."""
    rows: list[Sequence[object]] = []
    used_envs = set()
    for (rel, name), (size, _, row_digest) in sorted(data.records.items()):
        if name != product:
            continue
        source_sha, png_sha, env = data.provenance.get((rel, name), ("", "", ""))
        used_envs.add(env)
        rows.append([output_rel(rel), size, source_sha, png_sha, row_digest, env])
    header: list[Sequence[object]] = [
        ["# msrgb provenance manifest v1", f"product {product}", f"settings {digest}"]
    ]
    header += [["# env", e, data.envs.get(e, "unknown")] for e in sorted(used_envs) if e]
    return tsv.text([*header, MANIFEST_COLUMNS, *rows])


def write_provenance(data: StateData, outputs: dict[str, tuple[str, Path]]) -> None:
    """Write ``manifest.tsv`` of every product (``outputs``: name -> (digest, path)); a file
    is rewritten only when its content changes."""
    for product, (digest, path) in outputs.items():
        write_if_changed(path, provenance_text(product, digest, data))

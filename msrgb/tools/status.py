"""Is an output folder complete? Per product: images up to date, stale, missing, bad, and
images whose input is gone, from the state the runs recorded. Converts nothing, writes nothing,
takes no lock (a run may be going on).

    python -m msrgb.tools.status OUTPUT_DIR [--input INPUT_DIR] [--list N]

Without ``--input`` the inputs are those of the last run's plan (new or changed input files
are not seen); with it, the input folder is listed again. Exit code 0 only when everything is
up to date, 1 otherwise, 2 when the folder is no msrgb output folder or the arguments are wrong.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from msrgb.config.parse import products_from_dicts
from msrgb.config.products import Product
from msrgb.errors import MsrgbError
from msrgb.outputs.paths import OutputListing, OutputPaths
from msrgb.outputs.state import StateData, read_state_full
from msrgb.planning.samples import with_recorded_limits
from msrgb.planning.sharding import load_plan
from msrgb.readers.images import scaled_bands_of
from msrgb.sources.discovery import InputFormat, Source, discover_inputs
from msrgb.storage.locations import S3Path


@dataclass
class ProductStatus:
    """What is where for one product."""

    up_to_date: int = 0
    stale: list[str] = field(default_factory=list)  # output older than its input or settings
    missing: list[str] = field(default_factory=list)  # no output
    bad: list[str] = field(default_factory=list)  # recorded as a bad input, unchanged since
    gone: list[str] = field(default_factory=list)  # outputs whose input no longer exists

    @property
    def complete(self) -> bool:
        return not (self.stale or self.missing or self.bad or self.gone)


def products_of(output: OutputPaths) -> list[Product]:
    """The products of the last run (recorded by msrgb.planning.prepare), with dataset-wide limits
    where they were computed."""
    try:
        dicts = json.loads(output.products_file().read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MsrgbError(
            f"{output.output_dir}: no msrgb run recorded here ({output.products_file()} is "
            "missing); run the workflow first"
        ) from None
    # limits not computed yet: every image of the product counts as stale
    return [with_recorded_limits(p, output.stretch(p.name)) for p in products_from_dicts(dicts)]


def input_format_of(output: OutputPaths) -> InputFormat:
    """How the inputs of the last run were stored (stacked files or band folders)."""
    try:
        return InputFormat(**json.loads(output.input_format_file().read_text(encoding="utf-8")))
    except FileNotFoundError:
        return InputFormat()  # recorded by runs since band folders exist; before: stacked


def recorded_state(output: OutputPaths, n_shards: int) -> StateData:
    """What the runs recorded: finished shards, then the checkpoints of unfinished ones."""
    paths = []
    for kind in ("state", "progress"):
        folder = output.state_root / kind / str(n_shards)
        if folder.is_dir():
            paths += sorted(folder.glob("*.tsv"), key=lambda f: f.stat().st_mtime_ns)
    return read_state_full(paths)


def status(output: OutputPaths, input_dir: Path | S3Path | None = None) -> dict[str, ProductStatus]:
    """Per product, the state of every image of the output folder."""
    products = products_of(output)
    plan = load_plan(output)
    sources: Sequence[Source]
    if input_dir is None:
        sources = [s for m in plan.members for s in m]
    else:
        # folders that cannot be read are left out, as a run leaves them out (errors.tsv)
        sources = discover_inputs(input_dir, input_format_of(output), {b for p in products for b in p.bands}, problems=[])
    state = recorded_state(output, plan.n_shards)
    # images made before radiometric offsets were applied: stale if their input declares one
    # (looked at only with --input, where the input folder is known)
    scaled = functools.cache(scaled_bands_of(input_dir, products)) if input_dir is not None else None
    result = {}
    # images in S3: one listing of the prefix; in a folder: a stat each (an unreadable folder
    # then counts as missing images, not as an error)
    present = OutputListing(images=output.images) if output.images else os.path.exists
    for p in products:
        digest = p.digest() if (p.limits is not None or not p.dataset_stretch) else None
        st = ProductStatus()
        for src in sources:
            out = output.png_str(p, src)
            record = state.records.get((src.rel, p.name))
            bad = state.skipped.get(src.rel)
            if bad is not None and bad[:2] == (src.size, src.mtime_ns) and record is None:
                st.bad.append(src.rel)
            elif not present(out):
                st.missing.append(out)
            elif record != (src.size, src.mtime_ns, digest):
                st.stale.append(out)
            elif scaled is not None and (src.rel, p.name) in state.legacy and scaled(src).intersection(p.bands):
                st.stale.append(out)
            else:
                st.up_to_date += 1
        current = {s.rel for s in sources}
        st.gone = sorted(
            output.png_str(p, Source(rel, 0, 0))
            for rel, name in state.records
            if name == p.name and rel not in current
        )
        st.stale.sort()
        st.missing.sort()
        st.bad.sort()
        result[p.name] = st
    return result


def report(statuses: dict[str, ProductStatus], show: int) -> str:
    lines = []
    for name, st in statuses.items():
        lines.append(
            f"{name}: {st.up_to_date:,} up to date, {len(st.stale):,} stale, "
            f"{len(st.missing):,} missing, {len(st.bad):,} bad, {len(st.gone):,} to remove"
        )
        for label, items in (("stale", st.stale), ("missing", st.missing), ("bad", st.bad),
                             ("to remove", st.gone)):  # fmt: skip
            for item in items[:show]:
                lines.append(f"  {label}: {item!r}" if not item.isprintable() else f"  {label}: {item}")
            if len(items) > show:
                lines.append(f"  ... and {len(items) - show:,} more {label}")
    return "\n".join(lines)


if __name__ == "__main__":
    from msrgb.cli import main

    sys.exit(main(["status", *sys.argv[1:]]))

"""The summary of a run as people read it: the table at the end of a run, the clipping table, and
the lines that count the Items whose declared scaling was overridden.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


def override_lines(summary: dict) -> list[str]:
    """The closing lines that count the inputs converted this run whose radiometric scaling
    overrode what they declare: ``12 Items: raster:bands offset ignored, ...``."""
    return [
        f"{n:,} Item{'s' if n != 1 else ''}: {why}" for why, n in summary.get("scaling_overrides", {}).items()
    ]


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


def clipping_table(clipping: dict[str, dict]) -> str:
    """Lines for the end of a run: per product the most clipped and the darkest images."""
    lines = []
    for name, c in clipping.items():
        if not c["most_clipped"]:
            continue
        top = c["most_clipped"][0]
        share = max(top["clipped_low"] + top["clipped_high"])
        dark = c["darkest"][0]
        lines.append(
            f"  {name}: {c['images_clipped_over_5_percent']} of {c['images']} images with over 5 % "
            f"of a channel clipped; most clipped {top['image']} ({100 * share:.1f} %), darkest "
            f"{dark['image']} (mean {dark['mean']:.0f})"
        )
    return "\n".join(lines)


def closing_report(summary: dict, summary_path: object, clipped_sheets: object) -> tuple[str, list[str]]:
    """What the end of a run prints from its summary: the tables (for standard output) and the
    lines that call for attention (for standard error: catalogue overrides, warnings)."""
    tables = f"msrgb summary ({summary_path}):\n{summary_table(summary)}"
    clipping = clipping_table(summary.get("clipping", {}))
    if clipping:
        tables += f"\nmsrgb clipping (summary.json, {clipped_sheets}):\n{clipping}"
    lines = [f"msrgb: {line}" for line in override_lines(summary)]
    lines += [f"msrgb: warning: {note}" for note in summary.get("notes", [])]
    return tables, lines

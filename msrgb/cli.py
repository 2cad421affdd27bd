"""The command line: ``msrgb status OUT [--input IN]`` and ``msrgb verify OUT [--input IN]``
(also ``python -m msrgb ...``).
Exit status 0: complete / no difference; 1: something to do / differences; 2: cannot tell."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msrgb.errors import MsrgbError
from msrgb.storage.locations import location


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="msrgb", description="msrgb: look at an output folder")
    commands = ap.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="what is up to date, stale, missing or bad")
    status.add_argument("output_dir", type=Path)
    status.add_argument(
        "--input", type=location, help="list this input folder (or s3:// prefix) again (new, changed files)"
    )
    status.add_argument("--list", type=int, default=10, metavar="N", help="show up to N files per kind")
    verify = commands.add_parser("verify", help="check images against their manifests and recipes")
    verify.add_argument("output_dir", type=Path)
    verify.add_argument("--input", type=location, help="also check the source files (a local folder)")
    verify.add_argument("--product", action="append", help="only these products")
    args = ap.parse_args(argv)
    try:
        return run_status(args) if args.command == "status" else run_verify(args)
    except MsrgbError as exc:
        print(f"msrgb {args.command}: {exc}", file=sys.stderr)
        return 2


def run_status(args: argparse.Namespace) -> int:
    from msrgb.outputs.paths import OutputPaths
    from msrgb.tools.status import report, status

    statuses = status(OutputPaths.at(args.output_dir), args.input)
    print(report(statuses, args.list))
    return 0 if all(st.complete for st in statuses.values()) else 1


def run_verify(args: argparse.Namespace) -> int:
    from msrgb.outputs.paths import OutputPaths
    from msrgb.tools.verify import verify_product

    images = OutputPaths.at(args.output_dir).images
    if images:
        raise MsrgbError(
            f"the images of {args.output_dir} are in {images}; verify reads local images only "
            "(docs/object-storage.md, Limits)"
        )
    if args.input is not None and not isinstance(args.input, Path):
        raise MsrgbError(
            f"--input {args.input}: verify compares the source files' SHA-256 and reads local "
            "folders only; leave --input out to check the images against their manifests"
        )
    folders = sorted(m.parent for m in args.output_dir.glob("*/manifest.tsv"))
    if args.product:
        folders = [f for f in folders if f.name in args.product]
    if not folders:
        print(f"no product manifest (*/manifest.tsv) under {args.output_dir}", file=sys.stderr)
        return 1
    failures = 0
    for folder in folders:
        checked, problems = verify_product(folder, args.input)
        failures += len(problems)
        for problem in problems:
            print(problem)
        print(f"{folder.name}: {checked} image(s) checked, {len(problems)} difference(s)")
    return 1 if failures else 0

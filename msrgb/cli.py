"""The command line: ``msrgb status OUT [--input IN]``, ``msrgb verify OUT [--input IN]`` and
``msrgb export OUT [settings]`` (also ``python -m msrgb ...``).
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
    _export_parser(commands)
    args = ap.parse_args(argv)
    try:
        return {"status": run_status, "verify": run_verify, "export": run_export}[args.command](args)
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


def _export_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", help="export a run's images as an ML dataset (docs/ml-export.md)",
        description="Export the images of a finished run as a dataset into OUT/export/<product>/, as the "
        "'export' setting does. Settings come from --config (its 'export', top level or per product), "
        "then the options below.",
    )  # fmt: skip
    export.add_argument("output_dir", type=Path)
    export.add_argument("--product", action="append", help="only these products (default: every one)")
    export.add_argument("--config", type=Path, help="a config file whose 'export' setting to use")
    export.add_argument("--input", type=Path, help="the input folder (default: the run's)")
    export.add_argument("--format", choices=("imagefolder", "webdataset"))
    export.add_argument("--split", dest="by", choices=("stratified", "group", "files", "none"))
    export.add_argument("--ratios", type=float, nargs="+", metavar="R", help="train [val] test shares")
    export.add_argument("--seed", type=int)
    export.add_argument("--group", help="by group: folder, scene, grid or a regular expression")
    export.add_argument("--cell", type=float, help="group grid: the side of a cell in CRS units")
    export.add_argument("--files", nargs="+", metavar="SPLIT=FILE", help="by files: train=a.txt val=b.txt ...")
    export.add_argument("--labels", help="a CSV or TSV table of labels per image")
    export.add_argument("--croissant", action="store_true", default=None, help="also write croissant.json")
    export.add_argument("--license")
    export.add_argument("--name")
    export.add_argument("--attribution")
    export.add_argument("--samples-per-tar", type=int)


def run_export(args: argparse.Namespace) -> int:
    from msrgb.tools.export import export_folder

    for line in export_folder(args):
        print(line)
    return 0

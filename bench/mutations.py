"""Mutation check of the test suite: 23 small wrong changes to the code, each applied alone in a
copy of the repository, and whether the README's test command (or a part of it) catches it.

    python bench/mutations.py COPY [--only N ...] [-- PYTEST ARGS]

COPY is a folder to hold the copy (git worktree of HEAD); each mutation is found in the package
by its text (wherever the module that holds it lives), applied, the suite run with ``-x``, and
the change undone. The table says which test caught each one (docs/dev/testing.md keeps the
results before and after a restructuring of the suite).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: (name, text in the package, its replacement)
MUTATIONS = [
    ("the reference formula's divisor", '_GAIN_4000 = {"type": "gain", "max": 4000}', '_GAIN_4000 = {"type": "gain", "max": 4001}'),
    ("the stretch does not clip", "t = (values / hi).clip(0, 1)  # exactly", "t = (values / hi)  # exactly"),
    ("Sentinel-2 04.00 offset -900", "BASELINE_04_OFFSET = -1000.0", "BASELINE_04_OFFSET = -900.0"),
    ("SAFE metadata offsets ignored", "offsets[band] = _number(label, key, element.text)", "pass"),
    ("DN 0 not left out under an offset", "values[dn == 0] = np.nan", "pass"),
    ("boa_offset_applied ignored", 'flag if isinstance(flag, bool) else None,', "None,"),
    ("a provenance row dropped", "rows.append([output_rel(key[0], suffix), size, source_sha, png_sha, row_digest, env, radiometry])",
     "rows.append([output_rel(key[0], suffix), size, source_sha, png_sha, row_digest, env, radiometry]) if len(rows) else None"),
    ("orphans not deleted", "        if remove_output(png):\n            removed += 1", "        if False:\n            removed += 1"),
    ("a bad input not recorded as skipped", '        if self.on_error == "skip":\n            reason', '        if False:\n            reason'),
    ("subtraction read as addition", "ast.Sub: operator.sub,", "ast.Sub: operator.add,"),
    ("the output folder is not locked", "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", "pass"),
    ("a changed input not seen", "current = before.records.get(key) == record", "current = key in before.records"),
    ("clashing outputs not found", "            if key in outputs:\n                clashes.append", "            if False:\n                clashes.append"),
    ("mass deletion not stopped", "REMOVAL_COUNT, REMOVAL_SHARE, REMOVAL_FLOOR = 100, 0.10, 10", "REMOVAL_COUNT, REMOVAL_SHARE, REMOVAL_FLOOR = 10**9, 1.0, 10**9"),
    ("an impossible Slurm request passes", "    if threads > size.cpus:\n        raise SlurmQueryError", "    if False:\n        raise SlurmQueryError"),
    ("a small change's side outputs not touched", "touch(part_outputs(output, job.products, part, prepared))", "pass"),
    ("--drop-metadata not read", 'getattr(command_line(), "drop_metadata", None) is not True', "False"),
    ("leftover metadata records not seen", "return next(records, None) is None", "return True"),
    ("a small change's one job for --report", 'return args is None or bool(getattr(args, "report", None))', "return False"),
    ("the PNG filter's row sums overflow 16 bits", "    if w * 128 < 1 << 16:", "    if True:"),
    ("the PNG filter's padding scored", "    cand[:, :, :bpp] = 0  # the padding, out of the scores", "    pass"),
    ("band files decoded without GDAL where GDAL's georeferencing is needed", " if plain and data is not None and not gdal_georef else None", " if plain and data is not None else None"),
    ("a TIFF's remembered tags keyed by its directory alone", '            end = max(end, struct.unpack(order + "I", entry[8:12])[0] + len(value))', "            pass"),
]


def locate(copy: Path, text: str) -> Path:
    found = [p for p in (copy / "msrgb").rglob("*.py") if text in p.read_text()]
    if len(found) != 1:
        raise SystemExit(f"mutation text found in {len(found)} files: {text[:60]!r}")
    return found[0]


def run_one(copy: Path, name: str, old: str, new: str, pytest_args: list[str]) -> tuple[bool, str, float]:
    path = locate(copy, old)
    original = path.read_text()
    path.write_text(original.replace(old, new, 1))
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *pytest_args],
            cwd=copy, capture_output=True, text=True,
        )
    finally:
        path.write_text(original)
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, re.MULTILINE)
    return proc.returncode != 0, failed[0] if failed else proc.stdout.strip().splitlines()[-1], time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("copy", type=Path)
    parser.add_argument("--only", type=int, nargs="*")
    args, rest = parser.parse_known_args()
    args.pytest_args = [a for a in rest if a != "--"] or ["tests"]
    if not args.copy.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(args.copy), "HEAD"], cwd=REPO, check=True)
    for i, (name, old, new) in enumerate(MUTATIONS, 1):
        if args.only and i not in args.only:
            continue
        caught, by, seconds = run_one(args.copy, name, old, new, args.pytest_args)
        print(f"{i:2d}. {name}: {'caught by ' + by if caught else 'NOT CAUGHT (' + by + ')'} [{seconds:.0f} s]", flush=True)


if __name__ == "__main__":
    main()

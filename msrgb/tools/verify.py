"""Check a tree of PNGs against its provenance manifests and report every difference.

    python -m msrgb.tools.verify OUTPUT_DIR [--input INPUT_DIR] [--product NAME ...]

Checks, for every product folder with a ``manifest.tsv``: each listed PNG exists and has the
recorded SHA-256 and carries a recipe (msrgb.render.recipe) naming the product and the settings
digest of the manifest; no image is there that the manifest does not list; with ``--input``, each
source TIFF exists with the recorded size and SHA-256 (for an image made of band files, each
band file it was made from with its SHA-256). Exits 1 if anything differs.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from msrgb.config.presets import FORMATS
from msrgb.outputs.provenance_manifest import read_envs, read_provenance_manifest


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_product(folder: Path, input_dir: Path | None = None) -> tuple[int, list[str]]:
    """(images checked, differences) for one product folder. Images made by msrgb before
    0.4.0 (the manifest's environment says so) have no recipe, which is not a difference."""
    rows = read_provenance_manifest(folder / "manifest.tsv")
    envs = read_envs(folder / "manifest.tsv")
    problems = []
    listed = set()
    for row in rows:
        png = folder / row["path"]
        listed.add(row["path"])
        if not png.exists():
            problems.append(f"{png}: missing")
        elif sha256(png) != row["png_sha256"]:
            problems.append(f"{png}: content differs from the manifest (sha256)")
        elif _has_recipes(envs.get(row.get("env", ""), "")):
            problems += _check_recipe(png, folder.name, row["settings_digest"], row.get("radiometry"))
        if input_dir is not None and row["source_sha256"].startswith("["):
            problems += _check_band_files(input_dir, row["source_sha256"])
        elif input_dir is not None:
            stem = row["path"].rpartition(".")[0]  # .png, .jpg or .webp
            sources = [input_dir / (stem + s) for s in (".tif", ".tiff", ".TIF", ".TIFF")]
            source = next((s for s in sources if s.exists()), None)
            if source is None:
                problems.append(f"{input_dir / stem}.tif: source missing")
            elif source.stat().st_size != int(row["source_size"]) or sha256(source) != row["source_sha256"]:
                problems.append(f"{source}: source differs from the one the PNG was made from")
    for png in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        rel = png.relative_to(folder).as_posix()
        if rel not in listed and not png.name.startswith("."):
            problems.append(f"{png}: not in the manifest")
    return len(rows), problems


IMAGE_SUFFIXES = tuple(FORMATS.values())


def _has_recipes(versions: str) -> bool:
    """Whether the msrgb of these library versions writes recipes (0.4.0 and later)."""
    for part in versions.split():
        if part.startswith("msrgb="):
            numbers = part.split("=", 1)[1].split(".")[:2]
            try:
                return tuple(int(n) for n in numbers) >= (0, 4)
            except ValueError:
                return True
    return True


def _check_recipe(image: Path, product: str, digest: str, radiometry: str | None = None) -> list[str]:
    """The recipe inside the image (msrgb.render.recipe) names the product and its settings, and the
    radiometric scaling the manifest records (manifests before 0.5.0 have no such column)."""
    from msrgb.render.recipe import read_recipe

    try:
        recipe = read_recipe(image)
    except (OSError, ValueError) as exc:
        return [f"{image}: its recipe cannot be read ({exc})"]
    if recipe is None:
        return [f"{image}: carries no msrgb recipe"]
    if recipe.get("product") != product or recipe.get("settings") != digest:
        return [
            f"{image}: its recipe names product {recipe.get('product')!r} with settings "
            f"{recipe.get('settings')}, the manifest {product!r} with {digest}"
        ]
    if radiometry is not None and (json.loads(radiometry) if radiometry else None) != recipe.get("radiometry"):
        return [
            f"{image}: its recipe's radiometric scaling {recipe.get('radiometry')} differs from the "
            f"manifest's {radiometry or 'none'}"
        ]
    return []


def _check_band_files(input_dir: Path, recorded: str) -> list[str]:
    """An image made of band files: each file it was made from, with its recorded SHA-256
    (``[[path relative to the input folder, sha256], ...]``)."""
    problems = []
    for rel, digest in json.loads(recorded):
        source = input_dir / rel
        if not source.exists():
            problems.append(f"{source}: source missing")
        elif sha256(source) != digest:
            problems.append(f"{source}: source differs from the one the PNG was made from")
    return problems


if __name__ == "__main__":
    from msrgb.cli import main

    sys.exit(main(["verify", *sys.argv[1:]]))

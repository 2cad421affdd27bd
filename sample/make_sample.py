"""Cut the bundled sample (``sample/eurosat``) from a real Sentinel-2 L2A scene stored as one
Cloud-Optimized GeoTIFF per band (the folder ``shared/data/s2_29RKH`` of the development
checkout, see sample/README.md):

    python sample/make_sample.py ../shared/data/s2_29RKH sample/eurosat

20 tiles in the EuroSAT format: 64 x 64 pixels, 13 bands in EuroSAT's order (B8A 13th), uint16,
uncompressed, pixel-interleaved, the scene's UTM CRS. The 20 m and 60 m bands are resampled
bilinearly onto the grid of the 10 m bands; B10, which L2A products do not have, is zeros. Each
tile goes to a folder named after its dominant class in the scene's own classification layer
(SCL): BareSoil, ThinCirrus, Cloud.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from msrgb.config.presets import EUROSAT_BANDS
from msrgb.synth import write_tile  # noqa: E402

TILE = 64
#: the bands the scene has (all but B10)
MEASURED = [i for i, band in enumerate(EUROSAT_BANDS) if band != "B10"]
#: SCL class -> folder name
CLASSES = {5: "BareSoil", 10: "ThinCirrus", 9: "Cloud", 8: "Cloud", 4: "Vegetation", 6: "Water"}
#: tiles taken per folder, at most (20 in all)
PER_CLASS = {"BareSoil": 14, "ThinCirrus": 5, "Cloud": 1}


def read_on_grid(path: Path, ref: rasterio.DatasetReader, resampling: Resampling) -> np.ndarray:
    """The band at ``path`` on the grid of ``ref`` (GDAL's warper where the grids differ)."""
    with rasterio.open(path) as src:
        if src.transform == ref.transform and src.shape == ref.shape:
            return src.read(1)
        out = np.zeros(ref.shape, src.dtypes[0])
        reproject(
            src.read(1), out, src_transform=src.transform, src_crs=src.crs,
            dst_transform=ref.transform, dst_crs=ref.crs, resampling=resampling,
        )  # fmt: skip
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scene", type=Path, help="folder of per-band GeoTIFFs (B02.tif, ..., SCL.tif)")
    ap.add_argument("out", type=Path, help="folder to write the class folders into")
    args = ap.parse_args()
    with rasterio.open(args.scene / "B04.tif") as ref:
        cube = np.stack(
            [
                np.zeros(ref.shape, np.uint16)
                if band == "B10"
                else read_on_grid(args.scene / f"{band}.tif", ref, Resampling.bilinear)
                for band in EUROSAT_BANDS
            ]
        )
        scl = read_on_grid(args.scene / "SCL.tif", ref, Resampling.nearest)
        transform, epsg = ref.transform, ref.crs.to_epsg()
    rows, cols = cube.shape[1] // TILE, cube.shape[2] // TILE
    candidates: dict[str, list[tuple[float, int, int]]] = {}
    for i in range(rows):
        for j in range(cols):
            window = (slice(i * TILE, (i + 1) * TILE), slice(j * TILE, (j + 1) * TILE))
            counts = np.bincount(scl[window].ravel(), minlength=12)
            folder = CLASSES.get(int(counts.argmax()))
            if folder is None or cube[(MEASURED, *window)].min() == 0:
                continue  # another class, or no data in the tile
            # the most varied tiles first: fields, dunes and wadis rather than flat sand
            candidates.setdefault(folder, []).append((-float(cube[3][window].std()), i, j))
    written = 0
    for folder, wanted in PER_CLASS.items():
        chosen = sorted(candidates.get(folder, []))[:wanted]
        for n, (_, i, j) in enumerate(sorted(chosen, key=lambda c: c[1:]), start=1):
            x, y = transform * (j * TILE, i * TILE)
            data = cube[:, i * TILE : (i + 1) * TILE, j * TILE : (j + 1) * TILE]
            path = args.out / folder / f"{folder}_{n}.tif"
            write_tile(path, np.ascontiguousarray(data), (x, y), epsg, pixel_size=transform.a)
            written += 1
    print(f"wrote {written} tiles under {args.out}")


if __name__ == "__main__":
    main()

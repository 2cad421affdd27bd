"""The data check of Earth Search Items flagged ``earthsearch:boa_offset_applied: false``
(msrgb.radiometry.decide.shifted_share): the share of valid pixels below DN 1000 in the visible bands,
on real L2A reflectance as stored shifted (offset removed) and raw (+1000).

    python bench/shifted_check.py [SCENE_FOLDER]

SCENE_FOLDER holds per-band GeoTIFFs B02.tif, B03.tif, B04.tif (default: ../shared/data/s2_29RKH
when it is there); the bundled sample's 20 tiles are measured too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import rasterio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from msrgb.config.presets import EUROSAT_BANDS
from msrgb.radiometry.decide import SHIFTED_SHARE, shifted_share  # noqa: E402

VISIBLE = ("B02", "B03", "B04")


def line(name: str, bands: dict) -> str:
    shifted = shifted_share(bands)
    raw = shifted_share({b: v + 1000 for b, v in bands.items()})
    per_band = " ".join(f"{b} {100 * shifted_share({b: bands[b]}):.3f} %" for b in bands)
    verdict = "shifted" if shifted >= SHIFTED_SHARE else "taken as raw"
    return f"{name:24s} shifted {100 * shifted:7.3f} % ({per_band}) -> {verdict}; raw {100 * raw:.3f} %"


def main() -> None:
    scene = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data" / "s2_29RKH"
    print(f"threshold: {100 * SHIFTED_SHARE:.2f} % of valid pixels below DN 1000")
    if scene.is_dir():
        bands = {}
        for band in VISIBLE:
            with rasterio.open(scene / f"{band}.tif") as src:
                bands[band] = src.read(1)
        print(line(scene.name, bands))
    for tif in sorted((REPO / "sample" / "eurosat").rglob("*.tif")):
        with rasterio.open(tif) as src:
            ms = src.read()
        print(line(tif.stem, {b: ms[EUROSAT_BANDS.index(b)] for b in VISIBLE}))


if __name__ == "__main__":
    main()

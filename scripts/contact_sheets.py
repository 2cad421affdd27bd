"""Snakemake adapter: (re)build the contact sheets of one product (see
msrgb.engine.jobs.rebuild_sheets)."""

import gc
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from msrgb.outputs.paths import leave_marker  # noqa: E402 (light: no numpy, Pillow or rasterio)

logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(message)s",
)
pairs = [(Path(m), Path(s)) for m, s in zip(snakemake.params.sheet_lists, snakemake.output.sheets)]


def stale(sheet_list: Path, sheet: Path) -> bool:
    return not sheet.exists() or sheet.stat().st_mtime_ns <= sheet_list.stat().st_mtime_ns


# Most runs change no sheet: decide that before importing numpy, Pillow and rasterio.
if any(stale(m, s) for m, s in pairs):
    from msrgb.config.parse import products_from_dicts
    from msrgb.engine.jobs import rebuild_sheets  # noqa: E402
    from msrgb.storage.locations import location

    gc.freeze()  # the modules loaded: out of the job's cycle collections (and its forks' copies)
    product = products_from_dicts([snakemake.params.product])[0]
    images = location(snakemake.params.product_dir)
    done = rebuild_sheets(pairs, product, images, snakemake.params.thumbnail)
else:
    done = 0
logging.info("%d of %d contact sheet(s) rebuilt (pid %d)", done, len(pairs), os.getpid())
leave_marker(Path(snakemake.output.done))

"""Snakemake adapter: (re)build the contact sheets of one product (see msrgb.sheets)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from msrgb import sheets  # noqa: E402

logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(message)s",
)
pairs = [(Path(m), Path(s)) for m, s in zip(snakemake.input.manifests, snakemake.output.sheets)]
done = sheets.build_all(pairs, Path(snakemake.params.product_dir), sheets.SheetLayout(thumb=snakemake.params.thumbnail))
logging.info("%d of %d contact sheet(s) rebuilt", done, len(pairs))

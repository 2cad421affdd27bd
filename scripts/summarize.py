"""Snakemake adapter: collect what the shard jobs recorded into {output_dir}/errors.tsv."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from msrgb.report import write_errors  # noqa: E402

logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(message)s",
)
write_errors([Path(p) for p in snakemake.input.states], Path(snakemake.output.errors))

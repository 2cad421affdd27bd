"""Snakemake adapter: compute a dataset-wide percentile stretch (see
msrgb.engine.jobs.percentiles_of_sample)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from msrgb.config.parse import products_from_dicts
from msrgb.engine.jobs import percentiles_of_sample  # noqa: E402
from msrgb.errors import MsrgbError  # noqa: E402
from msrgb.jobs.runstore import RunStore  # noqa: E402
from msrgb.outputs.paths import OutputPaths, leave_marker  # noqa: E402
from msrgb.sources.stac import input_location  # noqa: E402

logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(message)s",
)
(product,) = products_from_dicts([snakemake.params.product])
percentiles_of_sample(
    product,
    input_location(snakemake.params.input_dir),
    Path(snakemake.params.sample),
    Path(snakemake.output.limits),
)
if not snakemake.params.get("shared_fs", True):  # shard jobs elsewhere fetch the limits from S3
    try:
        RunStore(OutputPaths.at(Path(snakemake.params.work_dir))).push([Path(snakemake.output.limits)])
    except MsrgbError as exc:
        logging.error("%s", exc)
        sys.exit(str(exc))
leave_marker(Path(snakemake.output.done))

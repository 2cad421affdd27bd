"""Snakemake adapter: errors.tsv and summary.json from what the shard jobs recorded (see
msrgb.engine.jobs.summary_job)."""

import gc
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from msrgb.config.parse import products_from_dicts
from msrgb.engine.jobs import summary_job  # noqa: E402
from msrgb.errors import MsrgbError  # noqa: E402
from msrgb.jobs.runstore import pull_states  # noqa: E402
from msrgb.jobs.shard import ends_as_a_job  # noqa: E402
from msrgb.outputs.paths import OutputPaths, leave_marker  # noqa: E402
from msrgb.planning.sharding import plan_shard_count  # noqa: E402

gc.freeze()  # the modules loaded: out of the job's cycle collections (and its forks' copies)

logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(message)s",
)
output = OutputPaths.at(Path(snakemake.params.output_dir))
if not snakemake.params.get("shared_fs", True):  # the shard jobs left their state in S3
    try:
        pull_states(output, plan_shard_count(output))
    except MsrgbError as exc:
        logging.error("%s", exc)
        sys.exit(str(exc))
with ends_as_a_job("summary"):
    summary_job(
        output,
        products_from_dicts(snakemake.params.products),
        snakemake.params.thumbnail,
        states=[Path(p) for p in snakemake.params.states],
        errors_out=Path(snakemake.output.errors),
        summary_out=Path(snakemake.output.summary),
        manifests=[Path(p) for p in snakemake.output.manifests],
    )
leave_marker(Path(snakemake.output.done))

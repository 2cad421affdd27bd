"""Snakemake adapter: a small change's shards, contact sheets and summary in one job (see
msrgb.engine.jobs.changes_job)."""

import gc
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from msrgb.config.parse import products_from_dicts  # noqa: E402
from msrgb.engine.jobs import ShardSettings, changes_job  # noqa: E402
from msrgb.jobs.shard import ends_as_a_job, remove_earlier_logs  # noqa: E402
from msrgb.outputs.paths import OutputPaths, leave_marker  # noqa: E402
from msrgb.sources.stac import input_location  # noqa: E402

gc.freeze()  # the modules loaded: out of the job's cycle collections (and its forks' copies)

logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(message)s",
)
remove_earlier_logs(Path(snakemake.log[0]), "*.log")  # only the latest change's log is kept
params = snakemake.params
job = ShardSettings(
    input_dir=input_location(params.input_dir),
    products=products_from_dicts(params.products),
    threads=params.shard_threads,
    stretch_files={k: Path(v) for k, v in params.stretch_files.items()},
    read_ahead=params.read_ahead,
    max_pixels=params.max_pixels,
)
with ends_as_a_job("small change"):
    changes_job(
        OutputPaths.at(Path(params.output_dir)),
        params.n_shards,
        {int(shard): token for shard, token in params.tokens},
        dict(params.parts),
        job,
        params.thumbnail,
        processes=snakemake.threads,
        additions=params.additions,
    )
leave_marker(Path(snakemake.output.done))

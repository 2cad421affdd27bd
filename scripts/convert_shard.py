"""Snakemake adapter: convert the images of one shard (see msrgb.jobs.shard.run_shard)."""

import gc
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from msrgb.config.parse import products_from_dicts
from msrgb.jobs import runstore  # noqa: E402
from msrgb.jobs.shard import ends_as_a_job, remove_earlier_logs, run_shard  # noqa: E402
from msrgb.outputs.paths import OutputPaths  # noqa: E402
from msrgb.sources.stac import input_location  # noqa: E402

gc.freeze()  # the modules loaded: out of the job's cycle collections (and its forks' copies)

logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(message)s",
)
remove_earlier_logs(Path(snakemake.log[0]))
shard_list = Path(snakemake.params.shard_list)  # .msrgb/shard_lists/<shard count>/<shard>.tsv
shared_fs = snakemake.params.get("shared_fs", True)
stretch_files = {k: Path(v) for k, v in snakemake.params.stretch_files.items()}
with ends_as_a_job("shard"):
    if not shared_fs:  # this job shares no file system with the main process: msrgb.jobs.runstore
        output = OutputPaths.of_shard_list(shard_list)
        n_shards, shard = int(shard_list.parent.name), int(shard_list.stem)
        runstore.pull_shard(output, n_shards, shard)
        runstore.RunStore(output).pull_files(stretch_files.values())
    try:
        run_shard(
            shard_list=shard_list,
            state_out=Path(snakemake.params.state),
            input_dir=input_location(snakemake.params.input_dir),
            products=products_from_dicts(snakemake.params.products),
            threads=snakemake.threads,
            on_error=snakemake.params.get("on_error"),
            stretch_files=stretch_files,
            read_ahead=snakemake.params.read_ahead,
            max_pixels=snakemake.params.max_pixels,
            # convert_shard leaves the marker Snakemake asked for; convert_pngs_<i> declares PNGs
            done=Path(snakemake.output.done) if snakemake.output.get("done") else None,
            retire_states=shared_fs,
        )
    finally:
        if not shared_fs:  # what was done is kept for the next run, also when the job failed
            runstore.push_shard(output, n_shards, shard)

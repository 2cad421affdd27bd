"""Snakemake adapter: errors.tsv and summary.json from what the shard jobs recorded."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from msrgb import report  # noqa: E402
from msrgb.plan import Layout, load_plan  # noqa: E402

logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(message)s",
)
layout = Layout(Path(snakemake.params.output_dir))
errors = report.write_errors([Path(p) for p in snakemake.input.states], Path(snakemake.output.errors))
report.write_provenance(
    [Path(p) for p in snakemake.input.states],
    {
        name: (digest, Path(path))
        for (name, digest), path in zip(snakemake.params.digests.items(), snakemake.output.manifests)
    },
)
summary = report.summarize(layout, load_plan(layout), snakemake.params.n_products, len(errors))
report.write_summary(Path(snakemake.output.summary), summary)
logging.info("summary:\n%s", report.summary_table(summary))

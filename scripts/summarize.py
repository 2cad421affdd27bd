"""Snakemake adapter: errors.tsv and summary.json from what the shard jobs recorded."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from msrgb import report  # noqa: E402
from msrgb.errors import MsrgbError  # noqa: E402
from msrgb.paths import leave_marker  # noqa: E402
from msrgb.products import products_from_dicts  # noqa: E402
from msrgb.runstore import pull_states  # noqa: E402
from msrgb.paths import OutputPaths  # noqa: E402
from msrgb.sharding import load_plan  # noqa: E402
from msrgb.state import read_state_full  # noqa: E402

logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(message)s",
)
layout = OutputPaths.at(Path(snakemake.params.output_dir))
plan = load_plan(layout)
per_class, n_shards = report.images_per_class(plan), plan.n_shards
del plan  # before the states are read: the plan of 270,000 inputs is about 80 MB
if not snakemake.params.get("shared_fs", True):  # the shard jobs left their state in S3
    try:
        pull_states(layout, n_shards)
    except MsrgbError as exc:
        logging.error("%s", exc)
        sys.exit(str(exc))
# the shard states are read once, for errors.tsv and for the provenance manifests
state = read_state_full([Path(p) for p in snakemake.params.states])
products = products_from_dicts(snakemake.params.products)
planning = report.read_planning_errors(Path(snakemake.params.planning))
errors = report.write_errors(state, Path(snakemake.output.errors), planning)
report.write_provenance(
    state,
    {
        p.name: (p.digest(), Path(path), p.suffix)
        for p, path in zip(products, snakemake.output.manifests)
    },
)
summary = report.summarize(layout, per_class, n_shards, snakemake.params.n_products, len(errors))
if planning:
    summary["notes"].insert(0, report.problems_note(planning))
summary["clipping"] = report.clipping_summary(state, {p.name: p.suffix for p in products})
report.write_summary(Path(snakemake.output.summary), summary)
report.write_looks(layout, products, state, summary["clipping"], snakemake.params.thumbnail)
logging.info("summary:\n%s", report.summary_table(summary))
leave_marker(Path(snakemake.output.done))

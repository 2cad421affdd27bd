"""Snakemake adapter: export one product's images as a dataset (see msrgb.engine.jobs.export_job)."""

import logging
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from msrgb.config.export import parse_export  # noqa: E402
from msrgb.config.parse import products_from_dicts  # noqa: E402
from msrgb.engine.jobs import export_job  # noqa: E402
from msrgb.errors import MsrgbError  # noqa: E402
from msrgb.outputs.paths import OutputPaths, leave_marker  # noqa: E402

logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(message)s",
)
log_file = Path(snakemake.log[0])  # <product>.<digest>.log: earlier settings' logs go
for old in log_file.parent.glob("*.log"):
    if old != log_file and re.fullmatch(re.escape(snakemake.wildcards.product) + r"\.[0-9a-f]{16}\.log", old.name):
        old.unlink(missing_ok=True)
product = products_from_dicts([snakemake.params.product])[0]
input_dir = Path(snakemake.params.input_dir) if snakemake.params.input_dir else None
try:
    export_job(OutputPaths.at(Path(snakemake.params.output_dir)), product, parse_export(snakemake.params.export), input_dir)
except MsrgbError as exc:
    logging.error("%s", exc)
    sys.exit(f"msrgb: {exc}")
leave_marker(Path(snakemake.output.done))

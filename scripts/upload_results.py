"""Snakemake adapter: upload the run's results to the output_dir in S3 (see msrgb.jobs.upload)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from msrgb.errors import MsrgbError  # noqa: E402
from msrgb.jobs.upload import upload_results  # noqa: E402
from msrgb.outputs.paths import OutputPaths, leave_marker  # noqa: E402

logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(message)s",
)
try:
    upload_results(OutputPaths.at(Path(snakemake.params.work_dir)))
except MsrgbError as exc:
    logging.error("%s", exc)
    print(exc, file=sys.stderr)
    sys.exit(1)
leave_marker(Path(snakemake.output.done))

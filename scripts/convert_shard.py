"""Snakemake adapter: convert the images of one shard (see msrgb.shard.run_shard)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from msrgb.errors import MsrgbError  # noqa: E402
from msrgb.products import products_from_dicts  # noqa: E402
from msrgb.shard import run_shard  # noqa: E402

logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(message)s",
)
try:
    run_shard(
        manifest=Path(snakemake.input.manifest),
        # convert_shard declares the state file; convert_pngs_<i> passes it as a param.
        state_out=Path(snakemake.output.get("state") or snakemake.params.state),
        input_dir=Path(snakemake.params.input_dir),
        products=products_from_dicts(snakemake.params.products),
        threads=snakemake.threads,
        on_error=snakemake.params.get("on_error"),
        stretch_files={k: Path(v) for k, v in snakemake.params.stretch_files.items()},
        read_ahead=snakemake.params.read_ahead,
        max_pixels=snakemake.params.max_pixels,
    )
except MsrgbError as exc:
    logging.error("%s", exc)
    print(exc, file=sys.stderr)
    sys.exit(1)
except KeyboardInterrupt:  # Ctrl-C reaches the jobs too: what was done is saved, no traceback
    logging.error("interrupted (Ctrl-C); the images made so far are recorded")
    sys.exit(130)
except Exception:
    logging.exception("shard failed")
    raise

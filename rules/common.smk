import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The conversion logic lives in the msrgb package next to this workflow.
sys.path.insert(0, str(Path(workflow.basedir)))

from msrgb import plan as msplan  # noqa: E402
from msrgb.products import ProductError, parse_products  # noqa: E402

validate(config, schema="../config/schema.yaml")

INPUT_DIR = Path(config["input_dir"])
OUTPUT_DIR = Path(config["output_dir"])
LAYOUT = msplan.Layout(OUTPUT_DIR)

try:
    PRODUCTS = parse_products(
        config["products"], png_compression=config["png_compression"]
    )
except ProductError as exc:
    raise WorkflowError(f"config 'products': {exc}") from None


def check_folders(input_dir, output_dir):
    """Fail early, with the folder named, when the folders cannot work."""
    if not input_dir.is_dir():
        raise WorkflowError(
            f"config 'input_dir': folder {str(input_dir)!r} does not exist "
            "(set it with --config input_dir=/path/to/tifs)"
        )
    inp, out = input_dir.resolve(), output_dir.resolve()
    if out == inp or inp in out.parents:
        raise WorkflowError(
            f"config 'output_dir' {str(output_dir)!r} is inside 'input_dir' "
            f"{str(input_dir)!r}; the input folder is never written to, choose another folder"
        )


def parallelism():
    """How many shard jobs can run at once: --cores locally, --jobs on a cluster."""
    if workflow.local_exec:
        try:
            return int(workflow.cores)
        except (WorkflowError, TypeError, ValueError):
            return 1
    return int(workflow.nodes or 1)


def choose_shard_count(n_files):
    if config["shards"] != "auto":
        return int(config["shards"])
    return msplan.shard_count(
        n_files,
        parallelism(),
        config["shard_target_size"],
        config["shard_min_size"],
    )


def make_plan():
    """Discover the inputs, split them into shards and write each shard's manifest (only when
    its content changed). Jobs started on other machines read the plan the main process
    wrote instead of planning again, so they see exactly the same shards."""
    if not workflow.is_main_process:
        return msplan.load_plan(LAYOUT)
    check_folders(INPUT_DIR, OUTPUT_DIR)
    try:
        sources = msplan.discover(INPUT_DIR)
    except msplan.PlanError as exc:
        raise WorkflowError(str(exc)) from None
    if not sources:
        raise WorkflowError(
            f"found no .tif or .tiff files under input_dir {str(INPUT_DIR)!r}"
        )
    n_shards = choose_shard_count(len(sources))
    if n_shards & (n_shards - 1):
        raise WorkflowError(f"config 'shards': {n_shards} is not a power of two")
    plan = msplan.write_plan(LAYOUT, sources, n_shards, PRODUCTS)
    msplan.scan_outputs(LAYOUT, plan, PRODUCTS)
    return plan


PLAN = make_plan()


def shard_pngs(shard):
    """Every PNG that shard ``shard`` produces, for every product."""
    return [LAYOUT.png_str(p.name, s) for s in PLAN.members[shard] for p in PRODUCTS]


def shard_manifest(shard):
    return str(LAYOUT.manifest(PLAN.n_shards, shard))


def shard_state(shard):
    return str(LAYOUT.state(PLAN.n_shards, shard))


def shard_log(shard, kind="shard"):
    return str(OUTPUT_DIR / "logs" / f"convert_{kind}" / f"{PLAN.n_shards}-{shard}.log")


def all_states():
    """The target: one small state file per shard, not every PNG (see README, How it works)."""
    return [shard_state(i) for i in range(PLAN.n_shards)]


def shard_threads():
    if config["threads_per_shard"] != "auto":
        return int(config["threads_per_shard"])
    return 1


def product_dicts():
    return [p.to_dict() for p in PRODUCTS]

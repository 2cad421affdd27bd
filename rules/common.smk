import json
import math
import os
import time
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The conversion logic lives in the msrgb package next to this workflow.
sys.path.insert(0, str(Path(workflow.basedir)))

from msrgb import plan as msplan  # noqa: E402
from msrgb import report as msreport  # noqa: E402
from msrgb import sheets as mssheets  # noqa: E402
from msrgb import stats as msstats  # noqa: E402
from msrgb.products import ProductError, check_band_count, parse_products  # noqa: E402

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


# Products whose stretch limits are computed once from a sample of the dataset.
DATASET_PRODUCTS = [p for p in PRODUCTS if p.dataset_stretch]


def sample_file(product):
    return str(LAYOUT.state_root / "samples" / f"{product}.tsv")


def stretch_file(product):
    """Where a dataset-wide stretch is recorded (README, Products)."""
    return str(OUTPUT_DIR / "stretch" / f"{product}.json")


def stretch_files():
    return {p.name: stretch_file(p.name) for p in DATASET_PRODUCTS}


def sample_of(wildcards):
    return sample_file(wildcards.product)


def product_dict(wildcards):
    return next(p.to_dict() for p in DATASET_PRODUCTS if p.name == wildcards.product)


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


def on_cluster():
    """True when shard jobs go to a batch system (--executor slurm, cluster-generic, ...).
    The executor is not known while the Snakefile is parsed, but only a cluster executor
    keeps --jobs apart from --cores (locally --jobs is an alias of --cores)."""
    return workflow.nodes is not None


def parallelism():
    """How many shard jobs can run at once: --cores locally, --jobs on a cluster."""
    if on_cluster():
        return int(workflow.nodes)
    try:
        return int(workflow.cores)
    except (WorkflowError, TypeError, ValueError):
        return 1


def choose_shard_count(n_files):
    if config["shards"] != "auto":
        return int(config["shards"])
    return msplan.shard_count(
        n_files,
        parallelism(),
        config["shard_target_size"],
        config["cluster_shard_min_size" if on_cluster() else "shard_min_size"],
    )


def choose_threads():
    """auto: 1 thread per shard locally, where --cores shards run side by side and the work is
    CPU-bound; more on a cluster, where shared file systems add latency that threads hide
    (README, Performance)."""
    if config["threads_per_shard"] != "auto":
        return int(config["threads_per_shard"])
    return config["cluster_threads_per_shard"] if on_cluster() else 1


def check_products_against(sources):
    """Reject, before anything runs, a product that needs a band the files do not have
    (judged on the first readable file; a single odd file is reported by its shard)."""
    import rasterio

    for source in sources[:5]:
        try:
            with rasterio.open(INPUT_DIR / source.rel) as src:
                count = src.count
        except rasterio.errors.RasterioIOError:
            continue
        try:
            check_band_count(PRODUCTS, count, str(INPUT_DIR / source.rel))
        except ProductError as exc:
            raise WorkflowError(f"config 'products': {exc}") from None
        return


SHEET_LAYOUT = mssheets.SheetLayout(thumb=config["thumbnail_size"])
SHEETS = (
    {}
)  # product name -> {sheet name: members' relative paths}, filled by plan_sheets


def write_atomic_text(path, text):
    msplan.write_atomic(path, text.encode("utf-8"))


def sheet_manifest(product, sheet):
    return LAYOUT.state_root / "sheets" / product / f"{sheet}.tsv"


def sheet_png(product, sheet):
    return str(OUTPUT_DIR / "contact_sheets" / product / f"{sheet}.png")


def plan_sheets(sources):
    """Write the manifests of the contact sheets (only those that changed)."""
    if not config["contact_sheets"]:
        return
    folders, overview = mssheets.choose(
        sources, config["contact_sheet_tiles"], config["overview_samples"]
    )
    for p in PRODUCTS:
        keep = {*folders, "overview"}
        old = LAYOUT.state_root / "sheets" / p.name
        for stale in old.glob("*.tsv") if old.is_dir() else []:
            if stale.stem not in keep:  # its folder is gone
                stale.unlink()
        for key, members in folders.items():
            title = f"{key.replace('__', '/')} ({len(members)} shown) - {p.name}"
            mssheets.write_manifest(
                sheet_manifest(p.name, key), title, members, p.digest(), SHEET_LAYOUT
            )
        mssheets.write_manifest(
            sheet_manifest(p.name, "overview"),
            f"overview - {p.name}",
            overview,
            p.digest(),
            SHEET_LAYOUT,
        )


def sheet_names(product):
    """Names of the sheets of ``product`` (from the manifests the main process wrote)."""
    folder = LAYOUT.state_root / "sheets" / product
    if not config["contact_sheets"] or not folder.is_dir():
        return []
    return sorted(f.stem for f in folder.glob("*.tsv"))


def contact_sheet_pngs(product):
    return [sheet_png(product, n) for n in sheet_names(product)]


def all_contact_sheets():
    return [sheet_png(p.name, n) for p in PRODUCTS for n in sheet_names(p.name)]


def sheet_manifests(product):
    return [str(sheet_manifest(product, n)) for n in sheet_names(product)]


def print_summary():
    """At the end of a successful run: the summary table, if this run wrote a summary."""
    path = Path(summary_file())
    try:
        if path.stat().st_mtime < float(LAYOUT.run_started().read_text()):
            return  # nothing ran: the summary is from an earlier run
        summary = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    print(f"msrgb summary ({path}):\n{msreport.summary_table(summary)}", flush=True)


def end_scheduler_timers():
    """Let the snakemake process exit as soon as the run is over. Snakemake 9.27's job rate
    limiter starts a 1-second timer thread after every scheduling round, not as a daemon, so
    Python waits up to a second for the last one at exit: 1-1.5 s on every run, half of a
    no-op run. Once onsuccess/onerror runs, no scheduling round follows and the timer would
    only wake a scheduler that has stopped, so cancelling it is safe."""
    import threading

    for thread in threading.enumerate():
        function = getattr(thread, "function", None)
        if isinstance(thread, threading.Timer) and "_schedule_reevalutation" in getattr(
            function, "__qualname__", ""
        ):
            thread.cancel()


def output_dir_of(wildcards, output):
    """The output folder, from the summary's path (summary.json lives at its top)."""
    return str(Path(output.summary).parent)


def provenance_manifests():
    """{output_dir}/{product}/manifest.tsv of every product (README, Provenance)."""
    return [str(OUTPUT_DIR / p.name / "manifest.tsv") for p in PRODUCTS]


def product_digests():
    return {p.name: p.digest() for p in PRODUCTS}


def summary_file():
    return str(OUTPUT_DIR / "summary.json")


def make_plan():
    """Discover the inputs, split them into shards and write each shard's manifest (only when
    its content changed). Jobs started on other machines read the plan the main process
    wrote instead of planning again, so they see exactly the same shards."""
    if not workflow.is_main_process:
        return msplan.load_plan(LAYOUT)
    check_folders(INPUT_DIR, OUTPUT_DIR)
    try:
        msplan.lock_output(LAYOUT)
        sources = msplan.discover(INPUT_DIR)
    except msplan.PlanError as exc:
        raise WorkflowError(str(exc)) from None
    if not sources:
        raise WorkflowError(
            f"found no .tif or .tiff files under input_dir {str(INPUT_DIR)!r}"
        )
    check_products_against(sources)
    write_atomic_text(LAYOUT.run_started(), f"{time.time()}\n")
    plan_sheets(sources)
    for product in DATASET_PRODUCTS:
        msstats.write_sample(Path(sample_file(product.name)), product, sources)
    n_shards = choose_shard_count(len(sources))
    if n_shards & (n_shards - 1):
        raise WorkflowError(f"config 'shards': {n_shards} is not a power of two")
    plan = msplan.write_plan(
        LAYOUT, sources, n_shards, PRODUCTS, choose_threads(), config["on_error"]
    )
    msplan.scan_outputs(LAYOUT, plan, PRODUCTS)
    return plan


PLAN = make_plan()
SNAKEMAKE_SPECIAL = re.compile(r"[{}<>]")


def shard_pngs(shard):
    """Every PNG that shard ``shard`` produces, for every product. Names with { } < > are left
    out: Snakemake reads {x} in a file name as a wildcard and <x> as a path variable, with no
    way to escape them, so such a PNG cannot be a target (the normal run, which targets state
    files, converts it)."""
    pngs = [LAYOUT.png_str(p.name, s) for s in PLAN.members[shard] for p in PRODUCTS]
    return [png for png in pngs if not SNAKEMAKE_SPECIAL.search(png)]


def png_rules_wanted():
    """Whether to define the convert_pngs_<i> rules, which declare every PNG (README, How it
    works). auto: when msrgb is a module (the host's rules may take our PNGs as inputs), or when
    the command line names a PNG or one of these rules: a PNG target in the main process, the
    rule of a job started on a cluster node (its command line names the job). Also for
    `snakemake --lint`, so that the linter sees every rule."""
    setting = config["png_targets"]
    if setting != "auto":
        return bool(setting)
    if not workflow.modifier.is_main_snakefile():  # loaded with `module`
        return True
    return any(
        a.lower().endswith(".png") or "convert_pngs_" in a or a == "--lint"
        for a in sys.argv[1:]
    )


def shard_manifest(shard):
    return str(LAYOUT.manifest(PLAN.n_shards, shard))


def shard_state(shard):
    return str(LAYOUT.state(PLAN.n_shards, shard))


def shard_log(shard, kind="shard"):
    return str(OUTPUT_DIR / "logs" / f"convert_{kind}" / f"{PLAN.n_shards}-{shard}.log")


def all_states():
    """The target: one small state file per shard, not every PNG (see README, How it works)."""
    return [shard_state(i) for i in range(PLAN.n_shards)]


def errors_table():
    return str(OUTPUT_DIR / "errors.tsv")


def summary_log():
    return str(OUTPUT_DIR / "logs" / "summarize.log")


def shard_resources(shard):
    """Batch-job requests of one shard, from its size (README, Running on a cluster)."""
    images = len(PLAN.members[shard]) * len(PRODUCTS)
    seconds = images * config["cluster_seconds_per_image"] / shard_threads()
    resources = {
        "mem_mb": config["cluster_mem_mb"],
        # minutes: 5 for queueing-free start-up (Python, Snakemake), then the images
        "runtime": 5 + math.ceil(seconds / 60),
    }
    # the same limit as H:MM:SS, for schedulers that want it (profiles/cluster-generic)
    resources["walltime"] = "{}:{:02d}:00".format(*divmod(resources["runtime"], 60))
    for key, variable in (
        ("slurm_partition", "MSRGB_SLURM_PARTITION"),
        ("slurm_account", "MSRGB_SLURM_ACCOUNT"),
    ):
        value = config[key] or os.environ.get(variable, "")
        if value:
            resources[key] = value
    return resources


def shard_threads():
    return PLAN.threads


def product_dicts():
    return [p.to_dict() for p in PRODUCTS]

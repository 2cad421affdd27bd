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
from msrgb import slurm as msslurm  # noqa: E402
from msrgb import snakemake_settings as smk  # noqa: E402
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
    return str(LAYOUT.state_root / "samples" / f"{product}.json")


def stretch_file(product):
    """Where a dataset-wide stretch is recorded (docs/products.md)."""
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


def choose_shard_count(n_files):
    if config["shards"] != "auto":
        return int(config["shards"])
    return msplan.shard_count(
        n_files,
        smk.parallel_jobs(workflow),
        config["shard_target_size"],
        config["cluster_shard_min_size" if CLUSTER else "shard_min_size"],
    )


def slurm_node_size():
    """The largest node of the Slurm partition the shard jobs go to (asked once, in the main
    process), or None when this is no Slurm run."""
    if not (CLUSTER and workflow.is_main_process and msslurm.available()):
        return None
    partition = smk.resource_setting(workflow, "convert_shard", "slurm_partition")
    try:
        return msslurm.node_size(partition)
    except msslurm.SlurmQueryError as exc:
        raise WorkflowError(
            f"cannot ask Slurm how large its nodes are: {exc}"
        ) from None


def choose_threads():
    """auto: 1 thread per shard locally, where --cores shards run side by side and the work is
    CPU-bound; more on a cluster, where shared file systems add latency that threads hide
    (docs/performance.md), but never more than a node of the partition has."""
    if config["threads_per_shard"] != "auto":
        return int(config["threads_per_shard"])
    if not CLUSTER:
        return 1
    threads = config["cluster_threads_per_shard"]
    if NODE_SIZE is not None and NODE_SIZE.cpus < threads:
        print(
            f"msrgb: threads_per_shard auto: {NODE_SIZE.cpus} instead of {threads}, the CPUs "
            f"of the largest node in Slurm partition {NODE_SIZE.partition}",
            file=sys.stderr,
        )
        threads = NODE_SIZE.cpus
    return threads


def check_slurm_request():
    """Stop before submitting anything when a shard job could never start on a node of the
    partition (threads_per_shard or --set-threads, mem_mb): Slurm would queue it forever.
    """
    if NODE_SIZE is None:
        return
    threads = smk.threads_setting(workflow, "convert_shard") or THREADS
    mem_mb = smk.resource_setting(workflow, "convert_shard", "mem_mb")
    try:
        msslurm.check_request(
            NODE_SIZE, threads, int(mem_mb) if mem_mb else None, "convert_shard"
        )
    except msslurm.SlurmQueryError as exc:
        raise WorkflowError(str(exc)) from None


def start_slurm_watch():
    """In the main process of a Slurm run: watch the shard jobs Slurm can never start (a
    request larger than any node) and end the run with Slurm's reason (msrgb.slurm)."""
    if NODE_SIZE is None:
        return None
    watch = msslurm.PendingWatch(
        os.getcwd(),
        ("convert_shard", *(f"convert_pngs_{i}" for i in range(PLAN.n_shards))),
        NODE_SIZE,
    )
    watch.start()
    return watch


def end_of_run(success):
    """onsuccess/onerror: the summary table, or again what Slurm said of jobs it could never
    start; then let the process exit at once."""
    if SLURM_WATCH is not None:
        SLURM_WATCH.stop()
        for problem in SLURM_WATCH.problems:
            print(f"msrgb: {problem}", file=sys.stderr)
    if success:
        print_summary()
    smk.end_scheduler_timers()


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


def output_dir_of(wildcards, output):
    """The output folder, from the summary's path (summary.json lives at its top)."""
    return str(Path(output.summary).parent)


def provenance_manifests():
    """{output_dir}/{product}/manifest.tsv of every product (docs/pipelines.md, Provenance)."""
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
        LAYOUT, sources, n_shards, PRODUCTS, THREADS, config["on_error"]
    )
    msplan.scan_outputs(LAYOUT, plan, PRODUCTS)
    return plan


CLUSTER = smk.is_cluster_run(workflow)
NODE_SIZE = slurm_node_size()
THREADS = choose_threads() if workflow.is_main_process else None
check_slurm_request()
PLAN = make_plan()
SLURM_WATCH = start_slurm_watch()
SNAKEMAKE_SPECIAL = re.compile(r"[{}<>]")


def shard_pngs(shard):
    """Every PNG that shard ``shard`` produces, for every product. Names with { } < > are left
    out: Snakemake reads {x} in a file name as a wildcard and <x> as a path variable, with no
    way to escape them, so such a PNG cannot be a target (the normal run, which targets state
    files, converts it)."""
    pngs = [LAYOUT.png_str(p.name, s) for s in PLAN.members[shard] for p in PRODUCTS]
    return [png for png in pngs if not SNAKEMAKE_SPECIAL.search(png)]


def png_rules_wanted():
    """Whether to define the convert_pngs_<i> rules, which declare every PNG (docs/how-it-works.md). auto: when msrgb is a module (the host's rules may take our PNGs as inputs), or when
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
    return shard_log_pattern(kind).format(n=PLAN.n_shards, shard=shard)


def shard_log_pattern(kind="shard"):
    return str(OUTPUT_DIR / "logs" / f"convert_{kind}" / "{n}-{shard}.log")


def shard_inputs(wildcards):
    """The shard's manifest, and the dataset-wide stretch limits its products use."""
    return {
        **stretch_files(),
        "manifest": str(LAYOUT.manifest(int(wildcards.n), int(wildcards.shard))),
    }


def shard_params():
    """What every shard job gets besides its manifest (the same for all shards)."""
    return {
        "input_dir": str(INPUT_DIR),
        "products": product_dicts(),
        "stretch_files": stretch_files(),
        "read_ahead": config["read_ahead"],
    }


def all_states():
    """The target: one small state file per shard, not every PNG (docs/how-it-works.md)."""
    return [shard_state(i) for i in range(PLAN.n_shards)]


def errors_table():
    return str(OUTPUT_DIR / "errors.tsv")


def summary_log():
    return str(OUTPUT_DIR / "logs" / "summarize.log")


def shard_threads(wildcards):
    return PLAN.threads


def shard_minutes(shard):
    """Minutes a shard job may run (a batch system's time limit), from its size: 5 for the
    start-up (Python, Snakemake), then the images (docs/cluster.md)."""
    images = len(PLAN.members[shard]) * len(PRODUCTS)
    seconds = images * config["cluster_seconds_per_image"] / PLAN.threads
    return 5 + math.ceil(seconds / 60)


def as_walltime(minutes):
    """Minutes as H:MM:SS, for schedulers that want it (profiles/cluster-generic)."""
    return "{}:{:02d}:00".format(*divmod(minutes, 60))


def shard_runtime(wildcards):
    return shard_minutes(int(wildcards.shard))


def shard_walltime(wildcards):
    return as_walltime(shard_minutes(int(wildcards.shard)))


def product_dicts():
    return [p.to_dict() for p in PRODUCTS]


PNG_RULES = png_rules_wanted()

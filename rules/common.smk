# Settings and input functions. Reading the workflow writes nothing (dry runs, --lint, --report
# leave the output folder as it was): the main process plans the run in memory
# (msrgb.planning.prepare.plan_run) and writes the plan when jobs are about to run (onstart,
# msrgb.planning.prepare.start_run); jobs started elsewhere read the plan it wrote.
import gc
import json
import math
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The conversion logic lives in the msrgb package next to this workflow.
sys.path.insert(0, str(Path(workflow.basedir)))
# What is alive now (Snakemake's modules and settings) and, once planned, the plan are left out
# of Python's cycle collections (gc.freeze): each full one while the workflow is read and the
# DAG built would go over them all again (docs/troubleshooting.md, "The end of every run").
gc.freeze()

from msrgb.errors import MsrgbError  # noqa: E402
from msrgb.jobs import runstore as msrunstore  # noqa: E402
from msrgb.outputs import summary as mssummary  # noqa: E402
from msrgb.outputs import sheet_lists as mssheets  # noqa: E402
from msrgb.planning import changes as mschanges  # noqa: E402
from msrgb.planning.prepare import plan_run, start_run  # noqa: E402
from msrgb.planning.settings import Settings, Where, command_line_booleans  # noqa: E402
from msrgb.planning.sharding import load_plan  # noqa: E402
from msrgb.planning.work import print_counts  # noqa: E402
from msrgb.readers import lazy_scaled_bands  # noqa: E402
from msrgb.snakemake import progress as msprogress  # noqa: E402
from msrgb.snakemake import settings as smk  # noqa: E402
from msrgb.snakemake import slurm as msslurm  # noqa: E402
from msrgb.sources.stac_search import StacSearch  # noqa: E402

validate(command_line_booleans(config), schema="../config/schema.json")
smk.no_cycle_collection_at_exit()


def settings_from_config():
    try:
        return Settings.from_config(config)
    except MsrgbError as exc:
        raise WorkflowError(str(exc)) from None


SETTINGS = settings_from_config()
INPUT_DIR = SETTINGS.input_dir
OUTPUT = SETTINGS.output
PRODUCTS = SETTINGS.products
# Products whose stretch limits are computed once from a sample of the dataset.
DATASET_PRODUCTS = [p for p in PRODUCTS if p.dataset_stretch]
# Whether the jobs share the main process's file system; without (--shared-fs-usage none) the
# run's state travels through the output_dir in S3 (msrgb.jobs.runstore, docs/object-storage.md).
SHARED_FS = smk.shares_file_system(workflow)
if not SHARED_FS:
    try:
        msrunstore.check_reachable(INPUT_DIR, SETTINGS.images)
    except MsrgbError as exc:
        raise WorkflowError(str(exc)) from None


def where_jobs_run():
    """Local or cluster, how many jobs at once, and on Slurm the size of the partition's
    largest node (asked once, in the main process)."""
    cluster = smk.is_cluster_run(workflow)
    node_size = None
    slurm = smk.executor_named() in (None, "slurm")  # None: a profile may name Slurm
    if cluster and slurm and workflow.is_main_process and msslurm.available():
        partition = smk.resource_setting(workflow, "convert_shard", "slurm_partition")
        try:
            node_size = msslurm.node_size(partition)
        except MsrgbError as exc:
            raise WorkflowError(
                f"cannot ask Slurm how large its nodes are: {exc}"
            ) from None
    mem_mb = smk.resource_setting(workflow, "convert_shard", "mem_mb")
    return Where(
        cluster=cluster,
        parallel_jobs=smk.parallel_jobs(workflow),
        node_size=node_size,
        threads_override=smk.threads_setting(workflow, "convert_shard"),
        mem_mb=(
            int(float(mem_mb)) if mem_mb and mem_mb.replace(".", "").isdigit() else None
        ),
    )


def prepare():
    """The main process plans the run (reading only); jobs started elsewhere read the plan it
    wrote when the run started, so they see exactly the same shards, threads and tokens
    whatever their own command line says."""
    if not workflow.is_main_process:
        return None
    try:
        prepared = plan_run(SETTINGS, WHERE, lazy_scaled_bands)
    except MsrgbError as exc:
        raise WorkflowError(str(exc)) from None
    for note in prepared.notes:
        print(f"msrgb: {note}", file=sys.stderr)
    print_counts(prepared.counts)
    return prepared


PROGRESS = []
SLURM_WATCH = []


def start_of_run():
    """onstart (jobs are about to run; not in dry runs): write the plan, then show progress and
    on Slurm watch for jobs that can never start."""
    try:
        start_run(SETTINGS, PREPARED)
        if not SHARED_FS:
            msrunstore.push_earlier_states(OUTPUT)
            msrunstore.push_plan(OUTPUT, PREPARED.plan.n_shards, files_of_jobs())
    except MsrgbError as exc:
        raise WorkflowError(str(exc)) from None
    start_progress(PREPARED)
    start_slurm_watch()


def start_progress(prepared):
    """Live progress across the shard jobs (msrgb.snakemake.progress); it shows once a job reports.
    Jobs that share no file system with this process report nothing it can read."""
    if not SETTINGS.progress or not prepared.counts.images or not SHARED_FS:
        return
    live = msprogress.LiveProgress(
        OUTPUT,
        prepared.plan.n_shards,
        prepared.counts.images,
        since=float(OUTPUT.run_started().read_text()),
        interval=SETTINGS.progress_interval,
        wrap_streams=smk.wrap_log_streams,
    )
    live.start()
    PROGRESS.append(live)


def start_slurm_watch():
    """In the main process of a Slurm run: watch for shard jobs Slurm can never start and end
    the run with Slurm's reason (msrgb.snakemake.slurm.PendingWatch)."""
    if WHERE.node_size is None:
        return
    rules = ("convert_shard", *(f"convert_pngs_{i}" for i in range(PLAN.n_shards)))
    watch = msslurm.PendingWatch(os.getcwd(), rules, WHERE.node_size)
    watch.start()
    SLURM_WATCH.append(watch)


def png_rules_wanted():
    """Whether to define the convert_pngs_<i> rules, which declare every PNG
    (docs/how-it-works.md): png_targets true/false, or auto = when msrgb is a module. Never
    for images in S3, which are no local files."""
    if SETTINGS.images:
        if config["png_targets"] is True:
            raise WorkflowError(
                "config 'png_targets': the images of an output_dir in S3 cannot be Snakemake "
                "targets (they are no local files); set png_targets: auto or false"
            )
        return False
    if config["png_targets"] != "auto":
        return bool(config["png_targets"])
    return smk.is_module(workflow)


def files_of_jobs():
    """Files besides the plan that the main process writes for the jobs: the Items a STAC
    search found (the jobs read them instead of searching again)."""
    return [OUTPUT.stac_search()] if isinstance(INPUT_DIR, StacSearch) else []


def plan_of_job():
    """In a job's process: the plan the main process wrote when the run started, fetched
    first from the output_dir in S3 when the job shares no file system with it."""
    try:
        if not SHARED_FS:
            msrunstore.pull_plan(OUTPUT, files_of_jobs())
        return load_plan(OUTPUT)
    except MsrgbError as exc:
        raise WorkflowError(str(exc)) from None


WHERE = where_jobs_run()
PREPARED = prepare()
gc.freeze()  # the plan too (see above)
smk.start_hook_in_module(workflow, start_of_run)
PLAN = PREPARED.plan if PREPARED else plan_of_job()
PNG_RULES = png_rules_wanted()


def one_job_for_changes():
    """The due shards of a small change, made in one job with the contact sheets and the
    summary (rule convert_changes, msrgb.planning.changes), or (). Only where that job's
    markers can stand for the separate jobs': locally, with the main process's files, without
    Snakemake's per-file metadata (else it would find the summary recorded as made from
    other inputs and make it again at the next run), without PNG rules (they ask for the
    shard markers) and not for a report (it shows the sheets' and summary's own jobs). Planning
    leaves out an output_dir in S3 (msrgb.planning.prepare)."""
    if not PREPARED or not PREPARED.changes or PNG_RULES:
        return ()
    if WHERE.cluster or not SHARED_FS or not smk.keeps_no_metadata(workflow):
        return ()
    if smk.makes_a_report():
        return ()
    return PREPARED.changes


CHANGES = one_job_for_changes()
CHANGES_DONE = str(mschanges.changes_done(OUTPUT, PLAN, CHANGES)) if CHANGES else ""
if CHANGES:
    print(
        f"msrgb: a small change: shard{'s' if len(CHANGES) > 1 else ''} "
        f"{', '.join(map(str, CHANGES))} of {PLAN.n_shards}, the contact sheets and the "
        "summary in one job (convert_changes)",
        file=sys.stderr,
    )


# Input functions and paths of the rules.


def stretch_file(product):
    """Where a dataset-wide stretch is recorded (docs/products.md)."""
    return str(OUTPUT.stretch(product))


def stretch_files():
    return {p.name: stretch_file(p.name) for p in DATASET_PRODUCTS}


def stretch_inputs():
    """The limits files as inputs of the shard jobs (a new file runs them again); jobs that
    share no file system fetch them from S3 instead (their job's marker orders them)."""
    return stretch_files() if SHARED_FS else {}


def in_work_dir(paths):
    """Files of the work folder that jobs of the main process make and use (contact sheets,
    summary, limits): with no shared file system, local() keeps them out of Snakemake's default
    storage, and their jobs run in the main process (localrule: not SHARED_FS)."""
    return paths if SHARED_FS else local(paths)


def part_done(part):
    """The marker the job making ``part`` leaves, named by a digest of what it is made from
    (msrgb.planning.prepare.Prepared.parts): a new digest makes Snakemake run that job again.
    """
    return str(OUTPUT.part_done(part, PLAN.parts[part]))


def upload_markers():
    """With output_dir in S3: the marker of the job that uploads the results."""
    return [part_done("upload")] if SETTINGS.images else []


def part_markers():
    """The markers of the contact sheets and the summary, which only the final target asks
    for (a small change's job leaves them itself)."""
    if CHANGES:
        return []
    sheets = [f"sheets/{p.name}" for p in PRODUCTS] if SETTINGS.contact_sheets else []
    return [part_done(part) for part in (*sheets, "summary")]


def stretch_markers():
    """The markers of the dataset-wide stretches the shard jobs use: a new sample computes the
    limits again, then runs the shards (which also take the limits' files as inputs)."""
    return [part_done(f"stretch/{p.name}") for p in DATASET_PRODUCTS]


def product_dicts():
    return [p.to_dict() for p in PRODUCTS]


# Products exported as datasets (msrgb.export), with their export settings.
EXPORTS = dict(SETTINGS.exports)


def export_markers():
    """The markers of the export jobs, which the final target asks for by name."""
    return [part_done(f"export/{name}") for name in EXPORTS]


def export_done_pattern():
    """The marker of any product's export: its digest names it, as part_done does."""
    return str(OUTPUT.part_done("export/{product}", "{digest}"))


def product_dict(name):
    return next(p.to_dict() for p in PRODUCTS if p.name == name)


def export_dict(name):
    return EXPORTS[name].to_dict()


def local_input_dir():
    """The input folder for the export jobs (labels and georeferencing beside the inputs), or
    empty when the inputs are not in a local folder."""
    return str(INPUT_DIR) if isinstance(INPUT_DIR, Path) else ""


def shard_list(shard):
    return str(OUTPUT.shard_list(PLAN.n_shards, shard))


def shard_state(shard):
    return str(OUTPUT.state(PLAN.n_shards, shard))


def shard_done(shard):
    """The marker of a finished shard job, named by the shard's token (msrgb.planning.sharding)."""
    return str(OUTPUT.done(PLAN.n_shards, shard, PLAN.tokens[shard]))


def shard_log_pattern():
    return str(OUTPUT.log("convert_shard", "{n}-{shard}.{token}"))


def shard_list_of(wildcards):
    return str(OUTPUT.shard_list(int(wildcards.n), int(wildcards.shard)))


def shard_state_of(wildcards):
    return str(OUTPUT.state(int(wildcards.n), int(wildcards.shard)))


def shard_params():
    """What every shard job gets besides its manifest (the same for all shards)."""
    return {
        "input_dir": str(INPUT_DIR),
        "products": product_dicts(),
        "stretch_files": stretch_files(),
        "read_ahead": config["read_ahead"],
        "max_pixels": config["max_pixels"],
        "shared_fs": SHARED_FS,
    }


SNAKEMAKE_SPECIAL = re.compile(r"[{}<>]")


def shard_pngs(shard):
    """Every PNG that shard ``shard`` produces, for every product. Names with { } < > are left
    out: Snakemake reads {x} in a file name as a wildcard and <x> as a path variable, with no
    way to escape them, so such a PNG cannot be a target (the normal run, which targets state
    files, converts it)."""
    pngs = [OUTPUT.png_str(p, s) for s in PLAN.members[shard] for p in PRODUCTS]
    return [png for png in pngs if not SNAKEMAKE_SPECIAL.search(png)]


def all_done():
    """The target: one small marker per shard, not every PNG (docs/how-it-works.md)."""
    return [shard_done(i) for i in range(PLAN.n_shards)]


def changes_done():
    """The marker of a small change's job (convert_changes), named when the workflow is read
    (its name holds the time of the states the job writes)."""
    return CHANGES_DONE


def changes_done_pattern():
    return str(OUTPUT.part_done("changes", "{digest}"))


def changes_parts():
    """The parts a small change's job makes besides the shards, with their digests."""
    return {part: PLAN.parts[part] for part in mschanges.made_by_changes(PLAN)}


def changes_additions():
    """The shards of a small change whose new inputs are all it brings: their job converts
    those alone (msrgb.jobs.shard.run_shard)."""
    return [shard for shard in CHANGES if shard in PREPARED.counts.additions]


def changes_processes():
    """Processes of a small change's job: as many as the jobs it stands for could use at once
    (its shards, or the sheets beside the summary), within --cores."""
    return max(1, min(WHERE.parallel_jobs, max(len(CHANGES), 2)))


def shards_finished():
    """What the final target asks for of the shards: every shard's marker, or for a small
    change its job's marker and the markers of the shards it leaves alone."""
    if CHANGES:
        others = [shard_done(i) for i in range(PLAN.n_shards) if i not in CHANGES]
        return [changes_done(), *others]
    return all_done()


def summary_done():
    """The marker that says the summary is made: its job's, or a small change's."""
    return changes_done() if CHANGES else part_done("summary")


def report_files():
    """The summary and contact sheets, which the final target asks for by name unless a small
    change's job makes them."""
    if CHANGES:
        return []
    return [errors_table(), summary_file(), *all_contact_sheets()]


def all_states():
    return [shard_state(i) for i in range(PLAN.n_shards)]


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


def sheet_names(product):
    """Names of the contact sheets of ``product``: planned, or in jobs started elsewhere from
    the manifests the run wrote."""
    if not SETTINGS.contact_sheets:
        return []
    if PREPARED:
        return sorted(PREPARED.sheets[product])
    return mssheets.sheet_names(OUTPUT, product)


def sheet_png(product, sheet):
    return in_work_dir(str(OUTPUT.contact_sheet(product, sheet)))


def contact_sheet_pngs(product):
    return [sheet_png(product, n) for n in sheet_names(product)]


def all_contact_sheets():
    return [sheet_png(p.name, n) for p in PRODUCTS for n in sheet_names(p.name)]


def sheet_lists(product):
    return [
        str(mssheets.sheet_list_path(OUTPUT, product, n)) for n in sheet_names(product)
    ]


def errors_table():
    return in_work_dir(str(OUTPUT.errors_table()))


def planning_errors():
    """What planning could not convert (unreadable folders, clashing outputs), for errors.tsv."""
    return str(OUTPUT.planning_errors())


def summary_file():
    return in_work_dir(str(OUTPUT.summary()))


def summary_log():
    return str(OUTPUT.log("summarize"))


def output_dir_of_export(wildcards, output):
    """The output folder, from the path of an export's marker."""
    return output_dir_above(
        f"export/{wildcards.product}", wildcards.digest, output.done
    )


def output_dir_of_changes(wildcards, output):
    """The output folder, from the path of a small change's marker."""
    return output_dir_above("changes", wildcards.digest, output.done)


def output_dir_above(part, digest, marker):
    """The output folder ``marker`` (the marker of ``part`` named ``digest``) is in."""
    depth = len(OUTPUT.part_done(part, digest).relative_to(OUTPUT.output_dir).parts)
    return str(Path(marker).parents[depth - 1])


def output_dir_of(wildcards, output):
    """The output folder, from the summary's path (summary.json lives at its top)."""
    return str(Path(output.summary).parent)


def histograms():
    """{output_dir}/histograms/{product}.png: output values of a sample of each product."""
    return in_work_dir([str(OUTPUT.histogram(p.name)) for p in PRODUCTS])


def clipped_sheets():
    """{output_dir}/clipping/{product}.png: the most clipped images of each product."""
    return in_work_dir([str(OUTPUT.clipped_sheet(p.name)) for p in PRODUCTS])


def legends():
    """{output_dir}/legends/{product}.png of the products drawn with a colour map."""
    return in_work_dir([str(OUTPUT.legend(p.name)) for p in PRODUCTS if p.is_index])


def provenance_manifests():
    """{output_dir}/{product}/manifest.tsv of every product (docs/pipelines.md, Provenance)."""
    return in_work_dir([str(OUTPUT.provenance(p.name)) for p in PRODUCTS])


def product_digests():
    return {p.name: p.digest() for p in PRODUCTS}


def end_of_run(success):
    """onsuccess/onerror: the summary table, or again what Slurm said of jobs it could never
    start; then let the process exit at once."""
    for live in PROGRESS:
        live.stop()
    for watch in SLURM_WATCH:
        watch.stop()
        for problem in watch.problems:
            print(f"msrgb: {problem}", file=sys.stderr)
    if success:
        print_summary()
    smk.end_scheduler_timers()


def print_summary():
    """At the end of a successful run: the summary table, if this run wrote a summary."""
    path = Path(summary_file())
    try:
        if path.stat().st_mtime < float(OUTPUT.run_started().read_text()):
            return  # nothing ran: the summary is from an earlier run
        summary = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    tables, lines = mssummary.closing_report(
        summary, path, OUTPUT.clipped_sheet("<product>")
    )
    print(tables, flush=True)
    for line in lines:
        print(line, file=sys.stderr, flush=True)

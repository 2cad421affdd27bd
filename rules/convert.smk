# Shard jobs. Snakemake sees a handful of jobs, never one per image (docs/how-it-works.md).
#
# convert_shard: what a normal run uses, one job per shard ({n}: shard count, {shard}: index,
#   {token}: the digest of the shard's shard_list). Its only output is a marker named by the token:
#   a shard whose inputs or settings changed gets a new token, so its marker is missing and
#   Snakemake runs it, without the workflow writing anything while it is read. The job records
#   which image was made from which input under which settings in the shard's state file and
#   writes the images alongside. Declaring 27,000 PNGs here would cost Snakemake a marker file
#   per PNG per run.
# convert_pngs_<i>: declares every PNG of shard i, so a PNG can be a target
#   (snakemake results/truecolor/Forest/Forest_7.png) or the input of another rule. Outputs
#   cannot be computed from a wildcard, hence one rule per shard. PNGs are flagged update() so
#   that Snakemake keeps the ones that are up to date. Defined only when wanted (png_targets).
# Both run the same script, which converts only missing or out-of-date images.
# convert_changes: a small change (msrgb.planning.changes): the due shards, the contact sheets
#   and the summary in one job, which leaves every marker their own jobs would leave and one
#   of its own, named by the change; the final target then asks for that marker instead.


rule convert_shard:
    input:
        *stretch_markers(),
        **stretch_inputs(),
    output:
        done=OUTPUT.done_pattern(),
    log:
        shard_log_pattern(),
    wildcard_constraints:
        n=r"\d+",
        shard=r"\d+",
        token=r"[0-9a-f]+(-\d+)?",
    conda:
        "../envs/msrgb.yaml"
    threads: shard_threads
    resources:
        runtime=shard_runtime,
        walltime=shard_walltime,
    params:
        **shard_params(),
        shard_list=shard_list_of,
        state=shard_state_of,
    script:
        "../scripts/convert_shard.py"


rule convert_changes:
    input:
        *stretch_markers(),
        **stretch_inputs(),
    output:
        done=changes_done_pattern(),
    log:
        str(OUTPUT.log("convert_changes", "{digest}")),
    wildcard_constraints:
        digest=r"[0-9a-f]{16}",
    conda:
        "../envs/msrgb.yaml"
    # its shards side by side, then the sheets beside the summary, as separate jobs would run
    threads: changes_processes()
    params:
        **shard_params(),
        shard_threads=PLAN.threads,
        output_dir=output_dir_of_changes,
        n_shards=PLAN.n_shards,
        tokens=[[shard, PLAN.tokens[shard]] for shard in CHANGES],
        additions=changes_additions() if CHANGES else [],
        parts=changes_parts(),
        thumbnail=config["thumbnail_size"],
    script:
        "../scripts/convert_changes.py"


for shard in range(PLAN.n_shards) if PNG_RULES else []:

    rule:
        name:
            f"convert_pngs_{shard}"
        input:
            *stretch_markers(),
            **stretch_files(),
            # ancient: the shard's own job runs first when its marker is missing, but a
            # finished shard leaves these PNGs up to date
            done=ancient(shard_done(shard)),
        output:
            pngs=update(shard_pngs(shard)),
        log:
            str(OUTPUT.log("convert_pngs", f"{PLAN.n_shards}-{shard}")),
        conda:
            "../envs/msrgb.yaml"
        threads: shard_threads
        resources:
            runtime=shard_minutes(shard),
            walltime=as_walltime(shard_minutes(shard)),
        params:
            **shard_params(),
            shard_list=shard_list(shard),
            state=shard_state(shard),
            # a requested PNG must exist at the end: a bad input fails the job
            on_error="fail",
        script:
            "../scripts/convert_shard.py"

# Shard jobs. Snakemake sees a handful of jobs, never one per image (docs/how-it-works.md).
#
# convert_shard: what a normal run uses, one job per shard ({n}: shard count, {shard}: index).
#   Its only output is the shard's state file, which records which image was made from which
#   input under which settings; the images are written alongside. Declaring 27,000 PNGs here
#   would cost Snakemake a marker file per PNG per run.
# convert_pngs_<i>: declares every PNG of shard i, so a PNG can be a target
#   (snakemake results/truecolor/Forest/Forest_7.png) or the input of another rule. Outputs
#   cannot be computed from a wildcard, hence one rule per shard. PNGs are flagged update() so
#   that Snakemake keeps the ones that are up to date. Defined only when wanted (png_targets).
# Both run the same script, which converts only missing or out-of-date images.


rule convert_shard:
    input:
        unpack(shard_inputs),
    output:
        state=update(LAYOUT.state_pattern()),
    log:
        shard_log_pattern("shard"),
    wildcard_constraints:
        n=r"\d+",
        shard=r"\d+",
    conda:
        "../envs/msrgb.yaml"
    threads: shard_threads
    resources:
        runtime=shard_runtime,
        walltime=shard_walltime,
    params:
        **shard_params(),
    script:
        "../scripts/convert_shard.py"


for shard in range(PLAN.n_shards) if PNG_RULES else []:

    rule:
        name:
            f"convert_pngs_{shard}"
        input:
            **stretch_files(),
            manifest=shard_manifest(shard),
        output:
            pngs=update(shard_pngs(shard)),
        log:
            shard_log(shard, "pngs"),
        conda:
            "../envs/msrgb.yaml"
        threads: shard_threads
        resources:
            runtime=shard_minutes(shard),
            walltime=as_walltime(shard_minutes(shard)),
        params:
            **shard_params(),
            state=shard_state(shard),
            # a requested PNG must exist at the end: a bad input fails the job
            on_error="fail",
        script:
            "../scripts/convert_shard.py"

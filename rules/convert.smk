# Shard jobs. Snakemake sees a handful of jobs, never one per image (see README, How it works).
#
# convert_shard_<i>: what a normal run uses. Its only output is the shard's state file, which
#   records which PNG was made from which input under which settings; the PNGs are written
#   alongside. Declaring 27,000 PNGs here would cost Snakemake a marker file per PNG per run.
# convert_pngs_<i>: declares every PNG of the shard, so a PNG can be a target
#   (snakemake results/truecolor/Forest/Forest_7.png) or the input of another rule.
#   PNGs are flagged update() so that Snakemake keeps the ones that are up to date. Defined
#   only when wanted (png_targets in the config): 27,000 declared paths cost Snakemake a
#   second per run, 270,000 half a gigabyte of memory.
# Both run the same script, which converts only missing or out-of-date images.
PNG_RULES = png_rules_wanted()

for shard in range(PLAN.n_shards):

    rule:
        name:
            f"convert_shard_{shard}"
        input:
            **stretch_files(),
            manifest=shard_manifest(shard),
        output:
            state=update(shard_state(shard)),
        log:
            shard_log(shard),
        conda:
            "../envs/msrgb.yaml"
        threads: shard_threads()
        resources:
            **shard_resources(shard),
        params:
            input_dir=str(INPUT_DIR),
            products=product_dicts(),
            stretch_files=stretch_files(),
            read_ahead=config["read_ahead"],
        script:
            "../scripts/convert_shard.py"

    if not PNG_RULES:
        continue

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
        threads: shard_threads()
        resources:
            **shard_resources(shard),
        params:
            state=shard_state(shard),
            input_dir=str(INPUT_DIR),
            products=product_dicts(),
            stretch_files=stretch_files(),
            read_ahead=config["read_ahead"],
            # a requested PNG must exist at the end: a bad input fails the job
            on_error="fail",
        script:
            "../scripts/convert_shard.py"

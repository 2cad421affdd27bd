# One rule per shard: each shard job declares every PNG it makes, but Snakemake only sees a
# handful of jobs. PNGs are flagged update() so that a re-run shard keeps its up-to-date PNGs
# and converts only what is missing or stale (see msrgb/shard.py).
for shard in range(PLAN.n_shards):

    rule:
        name:
            f"convert_shard_{shard}"
        input:
            manifest=shard_manifest(shard),
        output:
            # The state file comes first: Snakemake finds a target's producer by scanning
            # outputs in order, compiling a pattern per output until one matches.
            state=update(shard_state(shard)),
            pngs=update(shard_pngs(shard)),
        log:
            shard_log(shard),
        params:
            input_dir=str(INPUT_DIR),
            output_dir=str(OUTPUT_DIR),
            products=product_dicts(),
            png_compression=config["png_compression"],
        threads: shard_threads()
        script:
            "../scripts/convert_shard.py"

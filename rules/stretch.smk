# Dataset-wide percentile stretches: the limits are computed once, from a fixed sample of the
# inputs (planned when the workflow is read, written to .msrgb/samples/<product>.json when the
# run starts), and recorded in {output_dir}/stretch/<product>.json, which every shard job of that
# product reads. One rule per product: its marker is named by a digest of the sample, so a new
# sample makes Snakemake compute the limits again (outputs cannot be functions of a wildcard).


for product in DATASET_PRODUCTS:

    rule:
        name:
            f"dataset_percentiles_{product.name}"
        output:
            limits=in_work_dir(stretch_file(product.name)),
            done=part_done(f"stretch/{product.name}"),
        log:
            str(OUTPUT.log("dataset_percentiles", product.name)),
        localrule: not SHARED_FS
        conda:
            "../envs/msrgb.yaml"
        params:
            sample=str(OUTPUT.sample(product.name)),
            input_dir=str(INPUT_DIR),
            product=product.to_dict(),
            shared_fs=SHARED_FS,
            work_dir=str(OUTPUT.output_dir),
        script:
            "../scripts/dataset_percentiles.py"

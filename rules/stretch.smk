# Dataset-wide percentile stretches: the limits are computed once, from a fixed sample of the
# inputs (planned when the workflow is read, written to .msrgb/samples/<product>.json when the
# run starts), and recorded in {output_dir}/stretch/<product>.json, which every shard job of that
# product reads.


rule dataset_percentiles:
    output:
        limits=stretch_file("{product}"),
    log:
        str(LAYOUT.log("dataset_percentiles", "{product}")),
    conda:
        "../envs/msrgb.yaml"
    params:
        sample=sample_of,
        plan=sample_digest,
        input_dir=str(INPUT_DIR),
        product=product_dict,
    script:
        "../scripts/dataset_percentiles.py"

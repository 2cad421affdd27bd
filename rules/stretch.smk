# Dataset-wide percentile stretches: the limits are computed once, from a fixed sample of the
# inputs (listed at parse time in .msrgb/samples/<product>.tsv), and recorded in
# {output_dir}/stretch/<product>.json, which every shard job of that product reads.


rule dataset_percentiles:
    input:
        sample=sample_of,
    output:
        limits=stretch_file("{product}"),
    log:
        str(LAYOUT.log("dataset_percentiles", "{product}")),
    conda:
        "../envs/msrgb.yaml"
    params:
        input_dir=str(INPUT_DIR),
        product=product_dict,
    script:
        "../scripts/dataset_percentiles.py"

# The run's images as ML datasets (docs/ml-export.md): one job per exported product, after
# the summary job, whose provenance manifests it reads. Its marker is named by a digest of the
# export's settings (and the files they name), so a changed setting runs it again.


rule export_dataset:
    input:
        summary=summary_done(),
    output:
        done=export_done_pattern(),
    log:
        str(OUTPUT.log("export_dataset", "{product}.{digest}")),
    wildcard_constraints:
        product="|".join(re.escape(name) for name in EXPORTS) or "(?!)",
        digest=r"[0-9a-f]{16}",
    localrule: True
    conda:
        "../envs/msrgb.yaml"
    params:
        output_dir=output_dir_of_export,
        product=lambda wildcards: product_dict(wildcards.product),
        export=lambda wildcards: export_dict(wildcards.product),
        input_dir=local_input_dir(),
    script:
        "../scripts/export_dataset.py"

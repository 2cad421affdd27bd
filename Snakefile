from snakemake.utils import min_version

# The version the test suite runs against; msrgb relies on update() outputs and on the
# incomplete-file handling of Snakemake 9 (docs/how-it-works.md).
min_version("9.27")


report: "report/workflow.rst"


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/stretch.smk"
include: "rules/convert.smk"
include: "rules/report.smk"
include: "rules/export.smk"


localrules:
    all,
    summarize,


rule all:
    default_target: True
    input:
        shards_finished(),
        # asked for by name, so that a new digest makes Snakemake run their jobs
        part_markers(),
        upload_markers(),
        export_markers(),
        report_files(),

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/stretch.smk"
include: "rules/convert.smk"


localrules:
    all,
    summarize,


rule all:
    default_target: True
    input:
        all_states(),
        errors_table(),

"""snakemake"""

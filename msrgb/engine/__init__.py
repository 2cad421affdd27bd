"""The in-process engine: a whole local run, the jobs Snakemake would run, by the functions
the Snakemake scripts call (``run``).

May import: everything but tools and the top-level modules.
"""

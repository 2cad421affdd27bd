"""Snakemake itself: the reads of its settings (pinned to its version by a test), Slurm's
node sizes and the watch for jobs that can never start, the live progress display of the main
process.

May import: errors, storage, outputs.
"""

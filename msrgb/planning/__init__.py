"""What a run will do, decided without writing and without reading pixels: the settings,
the checks before any work, shards and their lists, contact-sheet plans, stretch samples, the
work of each shard (``work``: the decision the shard jobs make too); ``start_run`` writes the
plan when jobs are about to run.

May import: errors, storage, radiometry, config, sources, outputs, snakemake (Slurm's node
sizes). Loads no numpy, rasterio or Pillow (a test checks).
"""

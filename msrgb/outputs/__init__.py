"""The output folder: every path in it (``paths``), the shard state files (``state``), the
lock, errors.tsv, sheet lists, live progress files, the summary's text, world files, the
library versions of an output.

May import: errors, storage, sources.
"""

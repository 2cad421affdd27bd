"""One job, and what runs after the jobs: a shard's conversion (``shard``, ``pipeline``,
``records``, ``convert``), dataset-wide stretch limits (``stats``), the summary, errors.tsv and
provenance manifests (``report``), and for runs whose jobs share no file system the run's state
in S3 (``runstore``, ``upload``).

May import: everything but engine, tools and the top-level modules.
"""

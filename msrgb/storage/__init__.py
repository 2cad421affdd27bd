"""Where bytes live: local files (atomic writes, listing input folders, output names),
tab-separated tables, and object storage (``s3://`` locations, listing, GETs and PUTs, GDAL's S3
settings).

Owns: ``locations`` (the one type of a file's place, :data:`~msrgb.storage.locations.Location`),
``listing``, ``remote`` (requests and transfers), ``files``, ``tsv``.
May import: errors.
"""

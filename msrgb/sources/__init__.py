"""Finding the inputs by their names and headers, never their pixels: stacked files and
band folders (``discovery``, ``bandfiles``), STAC Items and searches (``stac``,
``stac_search``), TIFF tags (``geotags``), stable hashes of input paths (``hashing``).

May import: errors, storage, radiometry.
"""

"""How a band's stored numbers become reflectance x 10000: the scaling model (``scaling``)
and the one decision of a band's scaling for every kind of input (``decide``: a STAC Item's
rules, the file's own scale and offset, a Sentinel-2 metadata file, the settings).

May import: errors. Loads no numpy until pixels are scaled.
"""

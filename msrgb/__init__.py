"""msrgb: multispectral GeoTIFFs to RGB PNGs."""

__version__ = "0.5.0"

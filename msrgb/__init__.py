"""msrgb: multispectral GeoTIFFs to RGB PNGs."""

__version__ = "0.4.0"

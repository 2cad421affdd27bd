"""msrgb's version, recorded in every recipe and provenance manifest (semantic versioning)."""

__version__ = "0.9.0"

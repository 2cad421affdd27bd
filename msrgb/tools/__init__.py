"""Looking at an output folder: ``status`` (what is up to date, stale or missing) and
``verify`` (images against their manifests and recipes), behind ``msrgb status`` and
``msrgb verify`` (msrgb.cli).

May import: every subpackage but engine.
"""

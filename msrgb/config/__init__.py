"""The products a run makes: the Product model, the presets and defaults, parsing and
checking the ``products`` setting, band expressions, colour maps. Reads no input.

May import: errors, radiometry.
"""

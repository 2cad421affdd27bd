"""From bands to images: stretches and looks, index products with colour maps, clip
figures, the PNG encoder, JPEG/WebP, the recipe inside every image, legends, contact sheets.

May import: errors, tile, storage, radiometry, config, outputs.
"""

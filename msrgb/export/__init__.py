"""A run's images as a dataset that ML tools load as they are (docs/ml-export.md): labels
(class folders, BigEarthNet metadata files, a table), reproducible splits, the Hugging Face /
torchvision ImageFolder and WebDataset layouts, the dataset card, ``manifest.csv`` and
Croissant metadata. Runs after the summary job, from the provenance manifests it writes.

May import: errors, storage, config, sources, outputs, planning, version.
"""

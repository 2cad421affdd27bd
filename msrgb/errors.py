"""Every error msrgb raises on purpose derives from :class:`MsrgbError`; each message names the
file or setting and the problem.

Two kinds matter to a shard job: a :class:`FileError` concerns one image (a bad input, an output
name the file system refuses) and follows ``on_error``; an :class:`OutputError` concerns the
whole output folder (disk full, read-only, no permission) and stops the job at once.
"""

from __future__ import annotations


class MsrgbError(Exception):
    """Base of msrgb's errors."""


class FileError(MsrgbError):
    """One image cannot be made; the others can (reported, or skipped with ``on_error: skip``)."""


class InputError(FileError):
    """An input that cannot be converted (not a TIFF, truncated, wrong bands, unreadable)."""


class OutputFileError(FileError):
    """One output file cannot be written although the folder can (a name too long for the output
    file system, a character it refuses)."""


class OutputError(MsrgbError):
    """Nothing more can be written to the output folder (disk full, read-only, no permission)."""


class PlanError(MsrgbError):
    """The inputs cannot be planned (missing folder, colliding names, a held lock)."""


class ProductError(MsrgbError, ValueError):
    """A product specification that cannot work; the message names the product and the key."""


class ExportError(MsrgbError):
    """A run's images cannot be exported as a dataset as the ``export`` setting asks (a class
    missing from a split, a name in two split lists); found before anything is written."""


class ShardError(MsrgbError):
    """Some images of a shard could not be made; the message lists each file and why."""


class SlurmQueryError(MsrgbError):
    """A Slurm command failed, or a request could never run; the message says which and why."""


class StorageError(MsrgbError):
    """The object store cannot be reached or refuses every request: nothing more can be read."""


class ExpressionError(ProductError):
    """An expression that is not plain arithmetic on band names and numbers."""


class ReadInBlocks(Exception):
    """Raised by a reader when an image that is small on disk is large once decoded: the caller
    reads it in blocks of rows instead. Control flow between the readers and the conversion,
    never an error a user sees, hence not an :class:`MsrgbError`."""

"""What a reader gives the renderer: the bands of an image (or of a block of its rows), with what
the input says of their no data, georeferencing and radiometric scaling. Read by msrgb.readers
and msrgb.render alike, so neither depends on the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from affine import Affine

from msrgb.radiometry.decide import Candidates


@dataclass
class Tile:
    """What was read from one input: the needed bands, plus what some products need."""

    bands: dict[int, np.ndarray]
    nodata: float | None = None
    transform: Affine | None = None
    crs_wkt: str | None = None
    #: band index -> what the input says of its radiometric scaling (msrgb.radiometry.decide); bands of
    #: which it says nothing are absent
    scaling: dict[int, Candidates] = field(default_factory=dict)
    #: what the input's scaling decisions override of what it declares (a STAC Item's
    #: raster:bands offset, ...), for the closing lines of a run
    overrides: frozenset[str] = frozenset()

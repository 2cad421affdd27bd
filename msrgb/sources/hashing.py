"""Stable hashes of input paths: the same on every machine and Python, they place inputs in shards
and choose samples (stretches, contact sheets, histograms) that do not move when inputs are
added.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
from collections.abc import Iterable
from operator import attrgetter

from msrgb.sources.discovery import Source


@functools.cache
def path_hash(rel: str) -> int:
    """A stable 64-bit hash of a relative path (the same on every machine and Python);
    remembered, as planning asks for it for the shards, the overview sheet and the stretch
    sample."""
    return int.from_bytes(hashlib.blake2b(rel.encode("utf-8"), digest_size=8).digest(), "big")


def hash_sample(sources: Iterable[Source], n: int) -> list[Source]:
    """The ``n`` sources with the smallest path hashes, sorted by path: a sample that keeps its
    members when other files come and go (the overview sheet, the dataset-wide stretch)."""
    return sorted(heapq.nsmallest(n, sources, key=lambda s: path_hash(s.rel)), key=attrgetter("rel"))
